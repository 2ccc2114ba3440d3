"""DDL statements from the binlog: what they change, and their text for the target.

`parse_ddl` turns one binlog Query event into one `DDL` per affected table. The lexer is
sqlglot's MySQL tokenizer (comments, backticks, string escapes, positions in the original
text); the grammar on top of it is a small recursive descent written here, because sqlglot
30's parser does not cover the MariaDB forms a tracker meets every day. Probed with
sqlglot 30.30, these give `exp.Command` (no structure) or a ParseError:
  - `RENAME TABLE a TO b`, `ALTER DATABASE ...`, `ALTER ONLINE TABLE ...`;
  - `ALTER TABLE t ADD COLUMN (a int, b int)`, `CHANGE COLUMN IF EXISTS`,
    `ADD UNIQUE INDEX IF NOT EXISTS`, `ADD PRIMARY KEY USING BTREE (a)`,
    `CONVERT TO CHARACTER SET`, `RENAME AS t2`;
  - `CREATE TABLE` with `PARTITION BY` or `WITH SYSTEM VERSIONING` (SHOW CREATE TABLE output);
  - columns of type `point`/`geometry`/`inet6`, `national varchar`, `COMPRESSED`,
    `AS (expr) PERSISTENT`.
An AST is also not what routing needs: `DDL.routed` rewrites only the identifier tokens of
the original text (by the tokens' positions), so MariaDB-specific clauses survive verbatim.

Statements that are not DDL return `[]`: transaction control (BEGIN, COMMIT, XA, ...), DML
in statement form, SET, GRANT/REVOKE and user/role management, FLUSH, ANALYZE/OPTIMIZE/
REPAIR/CHECK TABLE, and also DDL on objects dmray does not replicate: TEMPORARY tables,
views, triggers, procedures/functions, events, sequences, servers, tablespaces.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import TokenError

# sqlglot.tokens is the public home of both (defined in tokenizer_core since sqlglot 30,
# re-exported without __all__).
from sqlglot.tokens import Token, TokenType  # type: ignore[attr-defined]

from errors import SYNC_DDL_PARSE
from mysqlkit.sqlquote import quote_ident

__all__ = [
    "DDL",
    "AlterSpec",
    "Column",
    "Constraint",
    "DDLKind",
    "Index",
    "NameRef",
    "TableDef",
    "not_null_definition",
    "parse_create_table",
    "parse_ddl",
    "without_charset",
]

DDLKind = Literal[
    "create_database", "drop_database", "alter_database", "create_table", "drop_table",
    "rename_table", "truncate_table", "alter_table", "create_index", "drop_index",
]
# DM's binlog-filter event names.
_EVENT_TYPES: dict[str, str] = {
    "create_database": "create database", "drop_database": "drop database",
    "alter_database": "alter database", "create_table": "create table",
    "drop_table": "drop table", "rename_table": "rename table",
    "truncate_table": "truncate table", "alter_table": "alter table",
    "create_index": "create index", "drop_index": "drop index",
}

TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext",
                        "enum", "set"})
_INT_WIDTHS = {"tinyint": (4, 3), "smallint": (6, 5), "mediumint": (9, 8), "int": (11, 10),
               "bigint": (20, 20)}
# Synonyms the server stores under another name (what SHOW CREATE TABLE prints).
_TYPE_ALIASES = {
    "integer": "int", "int1": "tinyint", "int2": "smallint", "int3": "mediumint",
    "int4": "int", "int8": "bigint", "middleint": "mediumint", "bool": "tinyint",
    "boolean": "tinyint", "dec": "decimal", "numeric": "decimal", "fixed": "decimal",
    "real": "double", "double precision": "double", "float8": "double", "float4": "float",
    "character": "char", "nchar": "char", "nvarchar": "varchar", "char varying": "varchar",
    "character varying": "varchar", "json": "longtext", "long": "mediumtext",
}
_INDEX_STARTERS = frozenset({"CONSTRAINT", "PRIMARY", "PRIMARY KEY", "UNIQUE", "INDEX", "KEY",
                             "FULLTEXT", "SPATIAL", "FOREIGN", "FOREIGN KEY", "CHECK",
                             "PERIOD"})
_NOT_NAMES = frozenset({TokenType.STRING, TokenType.NUMBER, TokenType.L_PAREN,
                        TokenType.R_PAREN, TokenType.COMMA, TokenType.DOT,
                        TokenType.SEMICOLON, TokenType.EQ, TokenType.BIT_STRING,
                        TokenType.HEX_STRING, TokenType.NATIONAL_STRING,
                        TokenType.PARAMETER, TokenType.SESSION_PARAMETER})
_DDL_VERBS = frozenset({"CREATE", "DROP", "ALTER", "RENAME", "TRUNCATE"})


class _ParseError(Exception):
    """Internal: why a DDL could not be understood (becomes SYNC_DDL_PARSE)."""


# --- structure elements ---------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    name: str
    column_type: str  # as SHOW CREATE TABLE prints it: "int(10) unsigned", "enum('a','b')"
    data_type: str  # lower-case base type: "int", "varchar"
    unsigned: bool
    nullable: bool
    # VIRTUAL/STORED generated: present in binlog row images, never inserted on the target.
    generated: bool
    charset: str | None  # for text types; None when unknown or not text
    definition: str  # "`name` type attributes", without inline keys or FIRST/AFTER


@dataclass(frozen=True)
class Index:
    name: str  # "PRIMARY" for the primary key
    kind: Literal["primary", "unique", "index", "fulltext", "spatial"]
    columns: tuple[str, ...]
    suffixes: tuple[str, ...] = ()  # per column, e.g. "(10)" (prefix) or "DESC"
    options: str = ""  # "USING BTREE COMMENT 'x'"

    def definition(self) -> str:
        parts = []
        for i, col in enumerate(self.columns):
            suf = self.suffixes[i] if i < len(self.suffixes) else ""
            parts.append(quote_ident(col) + (suf if suf.startswith("(") or not suf
                                              else " " + suf))
        cols = "(" + ",".join(parts) + ")"
        if self.kind == "primary":
            head = "PRIMARY KEY"
        else:
            word = {"unique": "UNIQUE KEY", "index": "KEY", "fulltext": "FULLTEXT KEY",
                    "spatial": "SPATIAL KEY"}[self.kind]
            head = f"{word} {quote_ident(self.name)}"
        return f"{head} {cols}" + (f" {self.options}" if self.options else "")


@dataclass(frozen=True)
class Constraint:
    """A FOREIGN KEY, CHECK or PERIOD element, kept as written."""

    name: str
    kind: Literal["foreign", "check", "other"]
    definition: str


@dataclass(frozen=True)
class TableDef:
    """The body of a CREATE TABLE (or the elements of ALTER ... ADD (...))."""

    columns: tuple[Column, ...] = ()
    indexes: tuple[Index, ...] = ()  # unnamed ones have name ""
    constraints: tuple[Constraint, ...] = ()
    options: str = ""  # table options as written: "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    charset: str | None = None  # the table's default charset, if the options say it


@dataclass(frozen=True)
class AlterSpec:
    """One comma-separated alteration of ALTER TABLE. Kinds that do not change what the
    tracker holds (ENGINE=, ALGORITHM=, ALTER COLUMN SET DEFAULT, partitions, ...) are
    "other" and ignored by it."""

    op: Literal["add_column", "drop_column", "modify_column", "change_column",
                "rename_column", "add_index", "drop_primary_key", "drop_index",
                "rename_index", "add_constraint", "drop_constraint", "rename_table",
                "convert_charset", "default_charset", "other"]
    column: Column | None = None
    name: str = ""  # the column / index / constraint the alteration acts on
    new_name: str = ""
    position: Literal["", "FIRST", "AFTER"] = ""
    after: str = ""
    index: Index | None = None
    constraint: Constraint | None = None
    if_exists: bool = False  # IF [NOT] EXISTS: skip silently when it does not apply
    inline_primary: bool = False  # column definition with PRIMARY KEY
    inline_unique: bool = False  # column definition with UNIQUE [KEY]
    charset: str = ""
    # The comma-separated part of the statement this alteration is written in (positions
    # in DDL.text); `ADD COLUMN (a INT, b INT)` is one part for two alterations.
    span: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class NameRef:
    """A schema/table name's position in `DDL.text`, for routing."""

    start: int
    end: int  # exclusive; == start for an implicit database name (ALTER DATABASE opts)
    schema: str
    table: str  # "" for a database name
    primary: bool  # the affected object: when not migrated, the whole DDL is not


@dataclass(frozen=True)
class DDL:
    kind: DDLKind
    schema: str
    table: str  # "" for database-level DDL
    sql: str  # the whole statement as the binlog holds it
    # This table's part as a statement of its own: `sql` unless the statement was split
    # (DROP TABLE a, b / RENAME TABLE a TO b, c TO d).
    text: str = ""
    new_schema: str = ""  # rename_table, or alter_table with RENAME TO
    new_table: str = ""
    refs: tuple[NameRef, ...] = ()
    if_exists: bool = False  # IF EXISTS / IF NOT EXISTS
    or_replace: bool = False
    # create_table: the body; None for CREATE ... LIKE and CREATE ... SELECT.
    table_def: TableDef | None = None
    like_schema: str = ""
    like_table: str = ""
    alters: tuple[AlterSpec, ...] = ()  # alter_table
    index: Index | None = None  # create_index
    index_name: str = ""  # drop_index

    @property
    def event_type(self) -> str:
        """DM's binlog-filter event name ("create table", "drop index", ...)."""
        return _EVENT_TYPES[self.kind]

    def routed(self, route: Callable[[str, str], tuple[str, str] | None]) -> str | None:
        """The statement for the target, or None when its table/database is not migrated.

        `route(schema, table)` returns the target (schema, table) or None. Database names
        are routed by `route(schema, "")`, whose result's schema is used (its table part is
        ignored). Every table name is written schema-qualified and backticked; all other
        text is kept exactly as in the binlog. Secondary names (RENAME target, LIKE
        source, REFERENCES) that route to None keep their source name, schema-qualified.
        """
        text = self.text or self.sql
        out: list[str] = []
        last = 0
        for ref in sorted(self.refs, key=lambda r: r.start):
            got = route(ref.schema, ref.table)
            if got is None and ref.primary:
                return None
            if ref.table:
                s, t = got if got is not None else (ref.schema, ref.table)
                new = f"{quote_ident(s)}.{quote_ident(t)}"
            else:
                new = quote_ident(got[0] if got is not None else ref.schema)
            if ref.start == ref.end:
                new = " " + new
            out.append(text[last:ref.start])
            out.append(new)
            last = ref.end
        out.append(text[last:])
        return "".join(out)


    def without_alters(self, drop: Collection[int]) -> DDL | None:
        """This ALTER TABLE without its alterations at the indexes `drop` (of `alters`), the
        rest of the text as it is; a comma-separated part goes only when all of its
        alterations go. None when no alteration is left."""
        parts = sorted({a.span for a in self.alters})
        kept_parts = {a.span for i, a in enumerate(self.alters) if i not in drop}
        if not kept_parts:
            return None
        if len(kept_parts) == len(parts):
            return self
        text = self.text or self.sql
        head, tail = parts[0][0], parts[-1][1]
        pieces = [text[:head]]
        moves = [(0, head, 0)]  # (start, end, shift) of the text that stays
        at = head
        for a, b in (sp for sp in parts if sp in kept_parts):
            if at > head:
                pieces.append(", ")
                at += 2
            moves.append((a, b, at - a))
            pieces.append(text[a:b])
            at += b - a
        moves.append((tail, len(text), at - tail))
        pieces.append(text[tail:])
        refs = []
        for r in self.refs:  # names in dropped parts go with them
            for a, b, shift in moves:
                if a <= r.start and r.end <= b:
                    refs.append(replace(r, start=r.start + shift, end=r.end + shift))
                    break
        return replace(self, text="".join(pieces), refs=tuple(refs),
                       alters=tuple(a for a in self.alters if a.span in kept_parts))


# --- tokens -----------------------------------------------------------------------------------

def _up(tok: Token) -> str:
    """The keyword a token spells (upper case, single spaces); "" for quoted names/strings."""
    if tok.token_type in (TokenType.IDENTIFIER, TokenType.STRING, TokenType.NATIONAL_STRING):
        return ""
    return " ".join(tok.text.upper().split())


def _is_name(tok: Token) -> bool:
    return tok.token_type == TokenType.IDENTIFIER or (
        tok.token_type not in _NOT_NAMES and tok.text != "" and
        all(c.isalnum() or c in "_$" or ord(c) > 127 for c in tok.text))


class _P:
    """A cursor over the tokens of one statement (or of one part of it)."""

    def __init__(self, sql: str, toks: Sequence[Token], i: int = 0, end: int | None = None):
        self.sql = sql
        self.toks = toks
        self.i = i
        self.end = len(toks) if end is None else end

    def sub(self, i: int, end: int) -> _P:
        return _P(self.sql, self.toks, i, end)

    def done(self) -> bool:
        return self.i >= self.end

    def peek(self, k: int = 0) -> Token | None:
        j = self.i + k
        return self.toks[j] if j < self.end else None

    def word(self, k: int = 0) -> str:
        t = self.peek(k)
        return "" if t is None else _up(t)

    def at(self, *words: str) -> bool:
        return all(self.word(k) == w for k, w in enumerate(words))

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += len(words)
            return True
        return False

    def accept_any(self, *words: str) -> str:
        w = self.word()
        if w in words:
            self.i += 1
            return w
        return ""

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise _ParseError(f"expected {' '.join(words)} near {self.near()}")

    def near(self) -> str:
        t = self.peek()
        return "the end" if t is None else repr(self.sql[t.start:t.start + 30])

    def name(self) -> str:
        t = self.peek()
        if t is None or not _is_name(t):
            raise _ParseError(f"expected a name near {self.near()}")
        self.i += 1
        return t.text

    def qualified(self) -> tuple[str, str, int, int]:
        """`a` or `a`.`b` → (schema or "", name, start, end) with positions in sql."""
        start = self.i
        a = self.name()
        schema = ""
        if self.is_type(TokenType.DOT):
            self.i += 1
            schema, a = a, self.name()
        return schema, a, self.toks[start].start, self.toks[self.i - 1].end + 1

    def if_exists(self) -> bool:
        return self.accept("IF", "EXISTS")

    def if_not_exists(self) -> bool:
        return self.accept("IF", "NOT", "EXISTS")

    def skip_wait(self) -> None:
        # MariaDB: `WAIT n` / `NOWAIT` after a table name.
        if self.accept("WAIT"):
            self.i += 1
        else:
            self.accept("NOWAIT")

    def group_end(self, i: int) -> int:
        """Index of the `)` closing the `(` at i."""
        depth = 0
        for j in range(i, self.end):
            tt = self.toks[j].token_type
            if tt == TokenType.L_PAREN:
                depth += 1
            elif tt == TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    return j
        raise _ParseError("unbalanced parentheses")

    def is_lparen(self, k: int = 0) -> bool:
        return self.is_type(TokenType.L_PAREN, k)

    def is_type(self, tt: TokenType, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t.token_type == tt

    def split(self, i: int, end: int) -> list[tuple[int, int]]:
        """Token ranges between top-level commas in [i, end)."""
        out: list[tuple[int, int]] = []
        depth = 0
        start = i
        for j in range(i, end):
            tt = self.toks[j].token_type
            if tt == TokenType.L_PAREN:
                depth += 1
            elif tt == TokenType.R_PAREN:
                depth -= 1
            elif tt == TokenType.COMMA and depth == 0:
                out.append((start, j))
                start = j + 1
        out.append((start, end))
        return out

    def text(self, i: int, end: int) -> str:
        """Original text of tokens [i, end), comments inside included."""
        if i >= end:
            return ""
        return self.sql[self.toks[i].start:self.toks[end - 1].end + 1]


class _Tokenizer(MySQL.Tokenizer):
    # sqlglot swallows everything after a "command" keyword (RENAME, ...) into one string
    # token; a DDL grammar needs the real tokens.
    COMMANDS = set()


def _tokenize(sql: str) -> list[Token]:
    toks = _Tokenizer(dialect=MySQL()).tokenize(sql)
    while toks and toks[-1].token_type == TokenType.SEMICOLON:
        toks.pop()
    return toks


def _collation_charset(collation: str) -> str:
    return collation.split("_", 1)[0].lower()


# --- element parsers --------------------------------------------------------------------------

def _type_arg(tok: Token) -> str:
    if tok.token_type in (TokenType.STRING, TokenType.NATIONAL_STRING):
        return "'" + tok.text.replace("\\", "\\\\").replace("'", "''") + "'"
    return tok.text


@dataclass
class _ColumnParse:
    column: Column
    inline_primary: bool = False
    inline_unique: bool = False
    position: Literal["", "FIRST", "AFTER"] = ""
    after: str = ""


@dataclass
class _ColumnType:
    base: str  # the type word as written (SERIAL, LONG, ...)
    data_type: str
    column_type: str  # as information_schema.COLUMNS shows it
    unsigned: bool
    charset: str | None  # implied by the type (NCHAR...), if any


def _parse_column_type(p: _P) -> _ColumnType:
    base = p.word()
    if not base:
        raise _ParseError(f"expected a column type near {p.near()}")
    p.i += 1
    charset: str | None = None
    if base == "NATIONAL":
        base = p.word()
        p.i += 1
        charset = "utf8mb3"
    elif base in ("NCHAR", "NVARCHAR"):
        charset = "utf8mb3"
    if base in ("LONG", "NCHAR", "CHAR", "CHARACTER") and p.word() in ("VARCHAR", "VARYING",
                                                                         "VARBINARY"):
        nxt = p.word()
        p.i += 1
        base = ("mediumblob" if nxt == "VARBINARY" else "mediumtext") if base == "LONG" \
            else "varchar"
    if base == "LONG" and p.at("CHAR", "VARYING"):
        p.i += 2
    data_type = _TYPE_ALIASES.get(base.lower(), base.lower())
    args: list[str] = []
    if p.is_lparen():
        close = p.group_end(p.i)
        args = [_type_arg(t) for t in p.toks[p.i + 1:close] if t.token_type != TokenType.COMMA]
        p.i = close + 1
    unsigned = zerofill = False
    while True:
        w = p.accept_any("UNSIGNED", "SIGNED", "ZEROFILL")
        if not w:
            break
        unsigned = unsigned or w in ("UNSIGNED", "ZEROFILL")
        zerofill = zerofill or w == "ZEROFILL"
    if base == "SERIAL":  # BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE
        data_type, unsigned = "bigint", True
    args = _default_args(base.lower(), data_type, args, unsigned)
    if data_type == "float" and len(args) == 1:  # FLOAT(p): the precision picks the type
        data_type = "double" if int(args[0]) > 24 else "float"
        args = []
    column_type = data_type + (f"({','.join(args)})" if args else "")
    column_type += (" unsigned" if unsigned else "") + (" zerofill" if zerofill else "")
    return _ColumnType(base, data_type, column_type, unsigned, charset)


@dataclass
class _ColumnAttrs:
    nullable: bool
    charset: str | None
    generated: bool = False
    collation: str = ""
    cut: list[tuple[int, int]] = field(default_factory=list)  # token ranges left out


def _parse_column_attrs(p: _P, res: _ColumnParse, allow_position: bool,
                        attrs: _ColumnAttrs) -> None:
    """The attributes after the type, to the end of p: NULL-ness, charset and collation,
    generation; inline keys and the position go to `res` and are cut from the text."""
    while not p.done():
        k = p.i
        w = p.word()
        if p.is_lparen():
            p.i = p.group_end(p.i) + 1
        elif p.accept("NOT", "NULL"):
            attrs.nullable = False
        elif p.accept("NULL"):
            attrs.nullable = True
        elif w == "DEFAULT" or p.at("ON", "UPDATE"):
            p.i += 1 if w == "DEFAULT" else 2
            _skip_value(p)
        elif w in ("COMMENT", "COLLATE", "CHARSET") or p.at("CHARACTER", "SET"):
            p.i += 2 if w == "CHARACTER" else 1
            p.accept("=")
            val = p.peek()
            if val is None:
                raise _ParseError(f"{w} without a value")
            p.i += 1
            if w == "COLLATE":
                attrs.collation = val.text
            elif w != "COMMENT":
                attrs.charset = val.text.lower()
        elif w in ("ASCII", "UNICODE"):
            attrs.charset = "latin1" if w == "ASCII" else "ucs2"
            p.i += 1
        elif p.accept("GENERATED", "ALWAYS") or w == "AS":
            if p.accept("AS"):
                attrs.generated = True
        elif w in ("PRIMARY KEY", "PRIMARY", "KEY", "UNIQUE"):
            p.i += 1
            if w == "UNIQUE":
                p.accept_any("KEY", "INDEX")
                res.inline_unique = True
            else:
                p.accept("KEY")
                res.inline_primary = True
            attrs.cut.append((k, p.i))
        elif allow_position and w in ("FIRST", "AFTER"):
            p.i += 1
            if w == "AFTER":
                res.after = p.name()
                res.position = "AFTER"
            else:
                res.position = "FIRST"
            attrs.cut.append((k, p.i))
        else:
            p.i += 1


def _parse_column(p: _P, allow_position: bool, name: str | None = None) -> _ColumnParse:
    """A column definition over all of p (name first unless given, as for CHANGE)."""
    if name is None:
        name = p.name()
        while p.is_type(TokenType.DOT):
            p.i += 1  # `db`.`tbl`.`col`: only the last part names the column
            name = p.name()
    type_start = p.i
    ct = _parse_column_type(p)
    res = _ColumnParse(Column(name, "", "", False, True, False, None, ""),
                       inline_unique=ct.base == "SERIAL")
    attrs = _ColumnAttrs(nullable=ct.base != "SERIAL", charset=ct.charset)
    _parse_column_attrs(p, res, allow_position, attrs)
    nullable = attrs.nullable and not res.inline_primary
    charset = attrs.charset
    if ct.data_type in TEXT_TYPES:
        if charset is None and attrs.collation:
            charset = _collation_charset(attrs.collation)
    else:
        charset = None
    # The definition is rebuilt from the original text minus inline keys and position.
    pieces: list[str] = []
    j = type_start
    for a, b in attrs.cut:
        pieces.append(p.text(j, a))
        j = b
    pieces.append(p.text(j, p.end))
    rest = " ".join(x.strip() for x in pieces if x.strip())
    res.column = Column(name=name, column_type=ct.column_type, data_type=ct.data_type,
                        unsigned=ct.unsigned, nullable=nullable, generated=attrs.generated,
                        charset=charset, definition=f"{quote_ident(name)} {rest}")
    return res


def _default_args(base: str, data_type: str, args: list[str], unsigned: bool) -> list[str]:
    """The implicit lengths the server fills in, so types compare equal to SHOW CREATE."""
    if base in ("bool", "boolean"):
        return ["1"]
    if data_type in _INT_WIDTHS and not args:
        return [str(_INT_WIDTHS[data_type][1 if unsigned else 0])]
    if data_type == "decimal":
        return ["10", "0"] if not args else [*args, "0"] if len(args) == 1 else args
    if data_type in ("char", "binary", "bit") and not args:
        return ["1"]
    if data_type == "year" and not args:
        return ["4"]
    if data_type in ("time", "datetime", "timestamp") and args == ["0"]:
        return []
    return args


def _skip_value(p: _P) -> None:
    """Skip one DEFAULT / ON UPDATE value: literal, signed number, introduced string,
    (expression) or function call."""
    p.accept_any("-", "+")
    t = p.peek()
    if t is None:
        raise _ParseError("DEFAULT without a value")
    if t.token_type == TokenType.INTRODUCER:
        p.i += 1
    if p.is_lparen():
        p.i = p.group_end(p.i) + 1
        return
    p.i += 1
    if p.is_lparen():
        p.i = p.group_end(p.i) + 1


def _parse_key_parts(p: _P, lparen: int) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    close = p.group_end(lparen)
    cols: list[str] = []
    sufs: list[str] = []
    for a, b in p.split(lparen + 1, close):
        part = p.sub(a, b)
        if part.is_lparen():
            raise _ParseError("expression key parts are not supported")
        cols.append(part.name())
        sufs.append(part.text(part.i, b))
    return tuple(cols), tuple(sufs), close + 1


def _parse_index(p: _P) -> Index | Constraint | None:
    """An index or constraint element over all of p; None when it is not one (a column)."""
    start = p.i
    if p.word() not in _INDEX_STARTERS:
        return None
    symbol = ""
    if p.accept("CONSTRAINT"):
        if p.word() not in ("PRIMARY", "PRIMARY KEY", "UNIQUE", "FOREIGN", "FOREIGN KEY",
                            "CHECK"):
            symbol = p.name()
    w = p.word()
    if w in ("FOREIGN", "FOREIGN KEY"):
        p.i += 1
        p.accept("KEY")
        p.if_not_exists()
        fk_name = "" if p.is_lparen() else p.name()
        return Constraint(symbol or fk_name, "foreign", p.text(start, p.end))
    if w == "CHECK":
        return Constraint(symbol, "check", p.text(start, p.end))
    if w == "PERIOD":
        return Constraint(symbol, "other", p.text(start, p.end))
    kind: Literal["primary", "unique", "index", "fulltext", "spatial"]
    if w in ("PRIMARY", "PRIMARY KEY"):
        p.i += 1
        if w == "PRIMARY":
            p.expect("KEY")
        kind = "primary"
    elif w == "UNIQUE":
        p.i += 1
        p.accept_any("INDEX", "KEY")
        kind = "unique"
    elif w in ("INDEX", "KEY"):
        p.i += 1
        kind = "index"
    elif w in ("FULLTEXT", "SPATIAL"):
        p.i += 1
        p.accept_any("INDEX", "KEY")
        kind = "fulltext" if w == "FULLTEXT" else "spatial"
    else:
        raise _ParseError(f"unexpected {w} in a key definition")
    p.if_not_exists()
    name = ""
    if not p.is_lparen() and p.word() != "USING":
        name = p.name()
    opts: list[str] = []
    if p.accept("USING"):
        opts.append("USING " + p.name())
    if not p.is_lparen():
        raise _ParseError(f"expected the key's columns near {p.near()}")
    cols, sufs, p.i = _parse_key_parts(p, p.i)
    rest = p.text(p.i, p.end)
    if rest:
        opts.append(rest)
    if kind == "primary":
        name = "PRIMARY"
    return Index(name or symbol, kind, cols, sufs, " ".join(opts))


def _table_options(p: _P) -> tuple[str, str | None]:
    """Table options over all of p: (text as written, default charset if given)."""
    text = p.text(p.i, p.end)
    charset: str | None = None
    while not p.done():
        if p.accept("CHARSET") or p.accept("CHARACTER", "SET"):
            p.accept("=")
            charset = p.name().lower()
        elif p.accept("COLLATE"):
            p.accept("=")
            coll = p.name()
            charset = charset or _collation_charset(coll)
        else:
            p.i += 1
    return text, charset


def _parse_elements(p: _P, lparen: int, allow_position: bool = False
                    ) -> tuple[list[_ColumnParse], list[Index | Constraint], int]:
    close = p.group_end(lparen)
    cols: list[_ColumnParse] = []
    keys: list[Index | Constraint] = []
    for a, b in p.split(lparen + 1, close):
        if a == b:
            raise _ParseError("empty element in a column list")
        sub = p.sub(a, b)
        key = _parse_index(sub)
        if key is None:
            cols.append(_parse_column(p.sub(a, b), allow_position))
        else:
            keys.append(key)
    return cols, keys, close + 1


def _table_def(cols: list[_ColumnParse], keys: Iterable[Index | Constraint], options: str,
               charset: str | None) -> TableDef:
    indexes: list[Index] = []
    for c in cols:
        if c.inline_primary:
            indexes.append(Index("PRIMARY", "primary", (c.column.name,), ("",)))
    constraints: list[Constraint] = []
    for k in keys:
        (indexes if isinstance(k, Index) else constraints).append(k)  # type: ignore[arg-type]
    for c in cols:
        if c.inline_unique:
            indexes.append(Index("", "unique", (c.column.name,), ("",)))
    columns = []
    for c in cols:
        col = c.column
        if col.data_type in TEXT_TYPES and col.charset is None and charset:
            col = replace(col, charset=charset)
        columns.append(col)
    return TableDef(tuple(columns), tuple(indexes), tuple(constraints), options, charset)


# --- statements -------------------------------------------------------------------------------

@dataclass
class _Ctx:
    sql: str
    db: str
    refs: list[NameRef] = field(default_factory=list)

    def resolve(self, schema: str) -> str:
        if schema:
            return schema
        if not self.db:
            raise _ParseError("no database selected for an unqualified name")
        return self.db

    def ref(self, q: tuple[str, str, int, int], primary: bool) -> tuple[str, str]:
        schema, table, start, end = q
        schema = self.resolve(schema)
        self.refs.append(NameRef(start, end, schema, table, primary))
        return schema, table

    def references(self, p: _P, i: int, end: int, schema: str) -> None:
        """Route `REFERENCES tbl` of foreign keys too (unqualified: the table's schema)."""
        for j in range(i, end - 1):
            if _up(p.toks[j]) == "REFERENCES":
                s, t, a, b = p.sub(j + 1, end).qualified()
                self.refs.append(NameRef(a, b, s or schema, t, False))


def parse_ddl(sql: str, current_db: str) -> list[DDL]:
    """The DDLs of one binlog Query event; [] for anything that is not DDL dmray tracks
    (see the module doc). Unqualified names resolve to `current_db`.

    Raises SYNC_DDL_PARSE for a DDL statement that cannot be understood.
    """
    try:
        toks = _tokenize(sql)
    except TokenError as exc:
        words = sql.split(None, 1)
        if words and words[0].upper() in _DDL_VERBS:
            raise SYNC_DDL_PARSE(sql, f"cannot tokenize: {exc}") from None
        return []
    try:
        return _statement(_P(sql, toks), _Ctx(sql, current_db))
    except _ParseError as exc:
        raise SYNC_DDL_PARSE(sql, str(exc)) from None
    except (ValueError, IndexError) as exc:
        raise SYNC_DDL_PARSE(sql, f"{type(exc).__name__}: {exc}") from None


def parse_create_table(sql: str) -> TableDef:
    """The structure of a CREATE TABLE statement (e.g. SHOW CREATE TABLE output).

    Raises ValueError when it is not a CREATE TABLE with a column list.
    """
    table_def = parse_create_statement(sql).table_def
    assert table_def is not None
    return table_def


def parse_create_statement(sql: str) -> DDL:
    """One CREATE TABLE statement with a column list, with the name it gives the table
    (schema "" when unqualified). Raises ValueError for anything else, a second
    statement included (table options run to the end, so it would be taken for them)."""
    try:
        toks = _tokenize(sql)
        if any(t.token_type == TokenType.SEMICOLON for t in toks):
            raise ValueError("one CREATE TABLE statement is expected, not several")
        # An unqualified name resolves to NUL, which no schema name holds.
        ddls = _statement(_P(sql, toks), _Ctx(sql, "\x00"))
    except (TokenError, _ParseError, IndexError) as exc:
        raise ValueError(str(exc)) from None
    if len(ddls) != 1 or ddls[0].kind != "create_table" or ddls[0].table_def is None:
        raise ValueError("not a CREATE TABLE statement with a column list")
    return ddls[0] if ddls[0].schema != "\x00" else replace(ddls[0], schema="")


def _statement(p: _P, c: _Ctx) -> list[DDL]:
    verb = p.word()
    if verb not in _DDL_VERBS:
        return []
    p.i += 1
    if verb == "CREATE":
        return _create(p, c)
    if verb == "DROP":
        return _drop(p, c)
    if verb == "ALTER":
        return _alter(p, c)
    if verb == "RENAME":
        return _rename(p, c)
    p.accept("TABLE")  # TRUNCATE [TABLE]
    schema, table = c.ref(p.qualified(), True)
    return [DDL("truncate_table", schema, table, c.sql, c.sql, refs=tuple(c.refs))]


def _database(kind: DDLKind, p: _P, c: _Ctx, or_replace: bool = False) -> list[DDL]:
    cond = p.if_exists() if kind == "drop_database" else p.if_not_exists()
    t = p.peek()
    if kind == "alter_database" and (t is None or not _is_name(t) or p.word() in (
            "DEFAULT", "CHARACTER", "CHARSET", "COLLATE", "COMMENT", "UPGRADE")):
        # ALTER DATABASE without a name: the current one; routing inserts it.
        at = p.toks[p.i - 1].end + 1
        schema = c.resolve("")
        c.refs.append(NameRef(at, at, schema, "", True))
    else:
        schema = p.name()
        c.refs.append(NameRef(t.start, t.end + 1, schema, "", True))  # type: ignore[union-attr]
    return [DDL(kind, schema, "", c.sql, c.sql, refs=tuple(c.refs), if_exists=cond,
                or_replace=or_replace)]


def _create(p: _P, c: _Ctx) -> list[DDL]:
    or_replace = p.accept("OR", "REPLACE")
    w = p.word()
    if w in ("DATABASE", "SCHEMA"):
        p.i += 1
        return _database("create_database", p, c, or_replace)
    p.accept_any("ONLINE", "OFFLINE")
    if p.word() in ("UNIQUE", "FULLTEXT", "SPATIAL", "INDEX"):
        return _create_index(p, c)
    if not p.accept("TABLE"):
        return []  # TEMPORARY TABLE, VIEW, TRIGGER, PROCEDURE, USER, ...
    cond = p.if_not_exists()
    schema, table = c.ref(p.qualified(), True)
    base = DDL("create_table", schema, table, c.sql, c.sql, if_exists=cond,
               or_replace=or_replace)
    like = p.accept("LIKE")
    if not like and p.is_lparen() and p.word(1) == "LIKE":
        p.i += 2
        like = True
    if like:
        ls, lt = c.ref(p.qualified(), False)
        return [replace(base, refs=tuple(c.refs), like_schema=ls, like_table=lt)]
    table_def = None
    if p.is_lparen() and p.word(1) != "SELECT":
        cols, keys, p.i = _parse_elements(p, p.i)
        if not cols:
            raise _ParseError("a table needs at least one column")
        end = p.i
        while end < p.end and _up(p.toks[end]) not in ("SELECT", "AS", "IGNORE", "REPLACE"):
            end += 1
        selects = end < p.end
        options, charset = _table_options(p.sub(p.i, end))
        # CREATE ... SELECT may add the select's columns: leave the structure unknown.
        table_def = None if selects else _table_def(cols, keys, options, charset)
    c.references(p, 0, p.end, schema)
    return [replace(base, refs=tuple(c.refs), table_def=table_def)]


def _create_index(p: _P, c: _Ctx) -> list[DDL]:
    w = p.accept_any("UNIQUE", "FULLTEXT", "SPATIAL")
    p.expect("INDEX")
    cond = p.if_not_exists()
    name = p.name()
    opts: list[str] = []
    if p.accept("USING"):
        opts.append("USING " + p.name())
    p.expect("ON")
    schema, table = c.ref(p.qualified(), True)
    if p.accept("USING"):
        opts.append("USING " + p.name())
    if not p.is_lparen():
        raise _ParseError(f"expected the index's columns near {p.near()}")
    cols, sufs, p.i = _parse_key_parts(p, p.i)
    kind: Literal["unique", "index", "fulltext", "spatial"] = (
        "unique" if w == "UNIQUE" else "fulltext" if w == "FULLTEXT"
        else "spatial" if w == "SPATIAL" else "index")
    return [DDL("create_index", schema, table, c.sql, c.sql, refs=tuple(c.refs),
                if_exists=cond, index=Index(name, kind, cols, sufs, " ".join(opts)))]


def _drop(p: _P, c: _Ctx) -> list[DDL]:
    w = p.word()
    if w in ("DATABASE", "SCHEMA"):
        p.i += 1
        return _database("drop_database", p, c)
    p.accept_any("ONLINE", "OFFLINE")
    if p.accept("INDEX"):
        cond = p.if_exists()
        name = p.name()
        p.expect("ON")
        schema, table = c.ref(p.qualified(), True)
        return [DDL("drop_index", schema, table, c.sql, c.sql, refs=tuple(c.refs),
                    if_exists=cond, index_name=name)]
    if not p.accept_any("TABLE", "TABLES"):
        return []  # TEMPORARY TABLE, VIEW, TRIGGER, USER, ...
    cond = p.if_exists()
    names: list[tuple[str, str, int, int]] = []
    while True:
        names.append(p.qualified())
        if not p.is_type(TokenType.COMMA):
            break
        p.i += 1
    # One statement per table: the head, this table's name, and the tail (RESTRICT, ...).
    head = c.sql[:names[0][2]]
    tail = c.sql[names[-1][3]:]
    out = []
    for q in names:
        schema = c.resolve(q[0])
        name_text = c.sql[q[2]:q[3]]
        ref = NameRef(len(head), len(head) + len(name_text), schema, q[1], True)
        out.append(DDL("drop_table", schema, q[1], c.sql, head + name_text + tail,
                       refs=(ref,), if_exists=cond))
    return out


def _rename(p: _P, c: _Ctx) -> list[DDL]:
    if not p.accept_any("TABLE", "TABLES"):
        return []  # RENAME USER
    cond = p.if_exists()
    head = c.sql[:p.toks[p.i].start] if not p.done() else c.sql
    out = []
    for a, b in p.split(p.i, p.end):
        q = p.sub(a, b)
        old = q.qualified()
        q.skip_wait()
        q.expect("TO")
        new = q.qualified()
        if not q.done():
            raise _ParseError(f"unexpected {q.near()} in RENAME TABLE")
        s0, s1 = c.resolve(old[0]), c.resolve(new[0])
        base = p.toks[a].start - len(head)
        text = head + p.text(a, b)
        refs = (NameRef(old[2] - base, old[3] - base, s0, old[1], True),
                NameRef(new[2] - base, new[3] - base, s1, new[1], False))
        out.append(DDL("rename_table", s0, old[1], c.sql, text, new_schema=s1,
                       new_table=new[1], refs=refs, if_exists=cond))
    return out


def _alter(p: _P, c: _Ctx) -> list[DDL]:
    w = p.word()
    if w in ("DATABASE", "SCHEMA"):
        p.i += 1
        return _database("alter_database", p, c)
    p.accept("ONLINE")
    p.accept("IGNORE")
    if not p.accept("TABLE"):
        return []  # VIEW, USER, EVENT, SEQUENCE, ...
    cond = p.if_exists()
    schema, table = c.ref(p.qualified(), True)
    p.skip_wait()
    specs: list[AlterSpec] = []
    new_schema = new_table = ""
    if not p.done():
        for a, b in p.split(p.i, p.end):
            if a == b:
                raise _ParseError("empty alteration")
            sub = p.sub(a, b)
            span = (p.toks[a].start, p.toks[b - 1].end + 1)
            if sub.at("RENAME") and sub.word(1) not in ("COLUMN", "INDEX", "KEY"):
                sub.i += 1
                sub.accept_any("TO", "AS")
                new_schema, new_table = c.ref(sub.qualified(), False)
                specs.append(AlterSpec("rename_table", name=new_schema, new_name=new_table,
                                       span=span))
                continue
            specs.extend(replace(spec, span=span) for spec in _alter_spec(sub))
    c.references(p, 0, p.end, schema)
    return [DDL("alter_table", schema, table, c.sql, c.sql, new_schema=new_schema,
                new_table=new_table, refs=tuple(c.refs), if_exists=cond, alters=tuple(specs))]


def _alter_spec(p: _P) -> list[AlterSpec]:
    w = p.word()
    if p.accept("ADD"):
        if p.word() in _INDEX_STARTERS:
            return [_key_spec(_parse_index(p))]
        p.accept("COLUMN")
        cond = p.if_not_exists()
        if p.is_lparen():
            cols, keys, p.i = _parse_elements(p, p.i)
            return [_col_spec("add_column", cp, cond) for cp in cols] + [
                _key_spec(k) for k in keys]
        return [_col_spec("add_column", _parse_column(p, True), cond)]
    if p.accept("DROP"):
        if p.accept("PRIMARY", "KEY") or p.accept("PRIMARY KEY"):
            return [AlterSpec("drop_primary_key")]
        if p.accept_any("INDEX", "KEY"):
            cond = p.if_exists()
            return [AlterSpec("drop_index", name=p.name(), if_exists=cond)]
        if p.accept_any("FOREIGN KEY", "CONSTRAINT", "CHECK") or p.accept("FOREIGN", "KEY"):
            cond = p.if_exists()
            return [AlterSpec("drop_constraint", name=p.name(), if_exists=cond)]
        if p.word() in ("PARTITION", "SYSTEM", "PERIOD"):
            return [AlterSpec("other")]
        p.accept("COLUMN")
        cond = p.if_exists()
        return [AlterSpec("drop_column", name=p.name(), if_exists=cond)]
    if p.accept("MODIFY"):
        p.accept("COLUMN")
        cond = p.if_exists()
        cp = _parse_column(p, True)
        return [_col_spec("modify_column", cp, cond, cp.column.name)]
    if p.accept("CHANGE"):
        p.accept("COLUMN")
        cond = p.if_exists()
        old = p.name()
        cp = _parse_column(p, True)
        return [_col_spec("change_column", cp, cond, old)]
    if p.accept("RENAME"):
        what = p.accept_any("COLUMN", "INDEX", "KEY")
        cond = p.if_exists()
        old = p.name()
        p.expect("TO")
        new = p.name()
        return [AlterSpec("rename_column" if what == "COLUMN" else "rename_index", name=old,
                          new_name=new, if_exists=cond)]
    if p.accept("CONVERT", "TO"):
        if not p.accept("CHARSET"):
            p.expect("CHARACTER", "SET")
        return [AlterSpec("convert_charset", charset=p.name().lower())]
    if w in ("DEFAULT", "CHARSET", "CHARACTER", "COLLATE"):
        _, charset = _table_options(p)
        return [AlterSpec("default_charset", charset=charset)] if charset else []
    return [AlterSpec("other")]


def _col_spec(op: Literal["add_column", "modify_column", "change_column"], cp: _ColumnParse,
              cond: bool, name: str = "") -> AlterSpec:
    return AlterSpec(op, column=cp.column, name=name or cp.column.name,
                     position=cp.position, after=cp.after, if_exists=cond,
                     inline_primary=cp.inline_primary, inline_unique=cp.inline_unique)


def _key_spec(k: Index | Constraint | None) -> AlterSpec:
    if isinstance(k, Index):
        return AlterSpec("add_index", index=k)
    if isinstance(k, Constraint):
        return AlterSpec("add_constraint", constraint=k)
    raise _ParseError("expected a key definition")


# --- text helpers for the tracker -------------------------------------------------------------

def _cut(text: str, spans: Iterable[tuple[int, int]]) -> str:
    out, last = [], 0
    for a, b in sorted(spans):
        out.append(text[last:a].rstrip())
        last = b
    out.append(text[last:])
    return " ".join(x.strip() for x in out if x.strip())


def without_charset(text: str) -> str:
    """`text` (column definition or table options) minus its `[DEFAULT] CHARACTER SET x`
    and `[DEFAULT] COLLATE x` clauses, for CONVERT TO / DEFAULT CHARSET changes."""
    toks = _tokenize(text)
    p = _P(text, toks)
    spans = []
    while not p.done():
        k = p.i
        p.accept("DEFAULT")
        if p.accept("CHARSET") or p.accept("CHARACTER", "SET") or p.accept("COLLATE"):
            p.accept("=")
            p.i += 1
            spans.append((toks[k].start, toks[p.i - 1].end + 1))
        else:
            p.i = k + 1
    return _cut(text, spans)


def not_null_definition(definition: str) -> str:
    """A column definition made NOT NULL, as the server does for primary key columns:
    drops `NULL` and `DEFAULT NULL`, appends `NOT NULL` if not there yet."""
    toks = _tokenize(definition)
    p = _P(definition, toks)
    spans = []
    has_not_null = False
    while not p.done():
        k = p.i
        if p.is_lparen():
            p.i = p.group_end(p.i) + 1
        elif p.accept("NOT", "NULL"):
            has_not_null = True
        elif p.accept("DEFAULT", "NULL") or p.accept("NULL"):
            spans.append((toks[k].start, toks[p.i - 1].end + 1))
        else:
            p.i += 1
    out = _cut(definition, spans)
    return out if has_not_null else out + " NOT NULL"
