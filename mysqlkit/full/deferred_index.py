"""Deferred secondary indexes for the full-migration load (no database, no Ray here).

A target table is created without its plain non-unique secondary indexes, its rows are
loaded, then one `ALTER TABLE ... ADD KEY ..., ADD KEY ...` adds them: InnoDB builds each
index by sorting instead of inserting into it row by row (mydumper's
--innodb-optimize-keys and TiDB Lightning do the same). Measured here (8 sysbench tables
x 250k rows, 4 loading connections): 7.4-7.7 s with the index during the load, 5.5-6.3 s
without it and adding it afterwards.

Only what is certainly safe is deferred: `KEY`/`INDEX` lines of a SHOW CREATE TABLE text
of an InnoDB table, never PRIMARY/UNIQUE/FULLTEXT/SPATIAL, nothing on a table with a
foreign key or system versioning, nothing a text that does not tokenize cleanly. Index
definitions are kept verbatim (prefix lengths, DESC, USING, COMMENT, IGNORED...).

Why a small tokenizer here rather than sqlglot's (which mysqlkit/schema/ddl.py uses to parse
DDL): the split copies every definition byte for byte, spaces and `/*! */` comments
included, and sqlglot's tokens skip whitespace and attach comments to their neighbours.
Quotes, comments and brackets are all that cutting at the body's top-level commas needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mysqlkit.sqlquote import quote_ident

__all__ = ["DeferredSplit", "alter_add_indexes", "index_name", "referenced_tables",
           "split_create"]


@dataclass(frozen=True)
class DeferredSplit:
    create_sql: str  # the statement without the deferred index lines
    indexes: tuple[str, ...] = ()  # their definitions, verbatim: "KEY `k` (`a`,`b`(10))"


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident (backticked), string, comment, word, space, punct
    text: str  # as written
    value: str = ""  # ident: the unescaped name; word: upper case


_WORD_RE = re.compile(r"[A-Za-z0-9_$]+")
_SPACE_RE = re.compile(r"\s+")


def _tokens(sql: str) -> list[_Tok]:
    """The statement as tokens; ValueError on an unterminated quote or comment."""
    out: list[_Tok] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "`":
            j = i + 1
            while True:
                j = sql.find("`", j)
                if j < 0:
                    raise ValueError("unterminated identifier")
                if sql.startswith("``", j):
                    j += 2
                    continue
                break
            out.append(_Tok("ident", sql[i:j + 1], sql[i + 1:j].replace("``", "`")))
            i = j + 1
        elif ch in "'\"":
            j = i + 1
            while True:
                if j >= n:
                    raise ValueError("unterminated string")
                if sql[j] == "\\":
                    j += 2
                elif sql[j] == ch:
                    if sql.startswith(ch * 2, j):
                        j += 2
                        continue
                    break
                else:
                    j += 1
            out.append(_Tok("string", sql[i:j + 1]))
            i = j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise ValueError("unterminated comment")
            out.append(_Tok("comment", sql[i:j + 2], sql[i:j + 2].upper()))
            i = j + 2
        elif (m := _SPACE_RE.match(sql, i)) is not None:
            out.append(_Tok("space", m.group()))
            i = m.end()
        elif (m := _WORD_RE.match(sql, i)) is not None:
            out.append(_Tok("word", m.group(), m.group().upper()))
            i = m.end()
        elif ch == "#" or sql.startswith("--", i):
            raise ValueError("line comment")  # never in SHOW CREATE TABLE: not ours to parse
        else:
            out.append(_Tok("punct", ch))
            i += 1
    return out


def _solid(toks: Sequence[_Tok]) -> list[_Tok]:
    return [t for t in toks if t.kind not in ("space", "comment")]


def _has_word(toks: Iterable[_Tok], *words: str) -> bool:
    """Any of `words` as a keyword, or inside a /*! versioned comment */."""
    for t in toks:
        if t.kind == "word" and t.value in words:
            return True
        if t.kind == "comment" and any(re.search(rf"\b{w}\b", t.value) for w in words):
            return True
    return False


@dataclass(frozen=True)
class _Parsed:
    head: str  # up to and including the body's "("
    elements: list[list[_Tok]]  # the body's comma-separated definitions
    tail: list[_Tok]  # from the body's ")" on: table options, partitioning


def _parse(create_sql: str) -> _Parsed | None:
    try:
        toks = _tokens(create_sql)
    except ValueError:
        return None
    # CREATE [OR REPLACE] [TEMPORARY] TABLE [IF NOT EXISTS] name [. name] (
    solid = [(i, t) for i, t in enumerate(toks) if t.kind not in ("space", "comment")]
    words = [t.value if t.kind == "word" else "" for _, t in solid]
    if words[:1] != ["CREATE"]:
        return None
    k = 1
    while k < len(solid) and words[k] in ("OR", "REPLACE", "TEMPORARY"):
        k += 1
    if k >= len(solid) or words[k] != "TABLE":
        return None
    k += 1
    if words[k:k + 3] == ["IF", "NOT", "EXISTS"]:
        k += 3
    if k >= len(solid) or solid[k][1].kind not in ("ident", "word"):
        return None
    k += 1
    if k + 1 < len(solid) and solid[k][1].text == ".":
        if solid[k + 1][1].kind not in ("ident", "word"):
            return None
        k += 2
    if k >= len(solid) or solid[k][1].text != "(":
        return None
    start = solid[k][0]
    depth = 1
    elements: list[list[_Tok]] = []
    cur: list[_Tok] = []
    for i in range(start + 1, len(toks)):
        t = toks[i]
        if t.kind == "punct" and t.text == "(":
            depth += 1
        elif t.kind == "punct" and t.text == ")":
            depth -= 1
            if depth == 0:
                elements.append(cur)
                head = "".join(x.text for x in toks[:start + 1])
                return _Parsed(head, elements, toks[i:])
        elif depth == 1 and t.kind == "punct" and t.text == ",":
            elements.append(cur)
            cur = []
            continue
        cur.append(t)
    return None  # the body never closes


def _deferrable_key(el: Sequence[_Tok], auto_columns: set[str]) -> bool:
    """`KEY `name` (...)` / `INDEX `name` (...)`, unless its first part is an
    AUTO_INCREMENT column (InnoDB refuses a table whose auto column starts no index)."""
    s = _solid(el)
    if len(s) < 4 or s[0].kind != "word" or s[0].value not in ("KEY", "INDEX"):
        return False
    if s[1].kind != "ident" or s[2].text != "(":
        return False
    first = s[3]
    return not (first.kind == "ident" and first.value.lower() in auto_columns)


def split_create(create_sql: str) -> DeferredSplit:
    """The CREATE TABLE without its deferrable indexes, and their definitions; the text
    unchanged and no definitions whenever deferring is not certainly safe."""
    unchanged = DeferredSplit(create_sql)
    parsed = _parse(create_sql)
    if parsed is None:
        return unchanged
    everything = [t for el in parsed.elements for t in el] + parsed.tail
    if _has_word(everything, "REFERENCES", "FOREIGN", "VERSIONING", "SYSTEM_TIME"):
        return unchanged  # InnoDB needs the FK's index; versioned tables refuse ALTERs
    tail = _solid(parsed.tail)
    engine = next((tail[i + 2].value for i in range(len(tail) - 2)
                   if tail[i].value == "ENGINE" and tail[i + 1].text == "="), "")
    if engine != "INNODB":
        return unchanged  # the sort-built index is InnoDB's; MyISAM does it by itself
    auto_columns = {s[0].value.lower() for el in parsed.elements
                    if (s := _solid(el)) and s[0].kind == "ident"
                    and _has_word(el, "AUTO_INCREMENT")}
    kept: list[str] = []
    deferred: list[str] = []
    for el in parsed.elements:
        text = "".join(t.text for t in el)
        if _deferrable_key(el, auto_columns):
            deferred.append(text.strip())
        else:
            kept.append(text.rstrip())
    if not deferred:
        return unchanged
    last = "".join(t.text for t in parsed.elements[-1])
    trailing = last[len(last.rstrip()):]  # the newline before ")"
    body = ",".join(kept) + trailing
    tail_text = "".join(t.text for t in parsed.tail)
    return DeferredSplit(parsed.head + body + tail_text, tuple(deferred))


def index_name(definition: str) -> str:
    """The name of a deferred definition (`KEY `a``b` (...)` -> "a`b")."""
    s = _solid(_tokens(definition))
    if len(s) < 2 or s[1].kind != "ident":
        raise ValueError(f"not a named index definition: {definition[:100]}")
    return s[1].value


def alter_add_indexes(schema: str, table: str, definitions: Sequence[str]) -> str:
    """One ALTER adding all of them: InnoDB reads the table once per index, by sort."""
    if not definitions:
        raise ValueError("no index to add")
    return (f"ALTER TABLE {quote_ident(schema)}.{quote_ident(table)} "
            + ", ".join(f"ADD {d}" for d in definitions))


def referenced_tables(create_sql: str) -> set[str]:
    """The tables (lower-case names, without schema) that the statement's foreign keys
    reference: their indexes stay in place (a foreign key needs an index on its parent's
    columns, which may be a plain KEY)."""
    try:
        s = _solid(_tokens(create_sql))
    except ValueError:
        return set()
    out: set[str] = set()
    for i, t in enumerate(s):
        if t.kind == "word" and t.value == "REFERENCES" and i + 1 < len(s):
            j = i + 1
            if j + 2 < len(s) and s[j + 1].text == ".":
                j += 2
            name = s[j].value if s[j].kind == "ident" else s[j].text
            out.add(name.lower())
    return out
