"""SHOW GRANTS lines parsed, and the privileges an account lacks for what a task needs
(rendered as DM lists them)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mysqlkit.routing import TableRef

__all__ = [
    "parse_grant",
]


_GRANT_RE = re.compile(
    r"^\s*(?P<verb>GRANT|REVOKE)\s+(?P<privs>.+?)\s+ON\s+"
    r"(?:(?P<kind>TABLE|PROCEDURE|FUNCTION|PACKAGE(?:\s+BODY)?)\s+)?"
    r"(?P<db>`(?:[^`]|``)*`|[^\s.`]+)(?:\.(?P<tbl>`(?:[^`]|``)*`|[^\s`]+))?"
    r"\s+(?:TO|FROM)\s",
    re.IGNORECASE | re.DOTALL,
)


# Names MariaDB/MySQL print for the privileges DM asks for, mapped to one spelling.
_PRIV_ALIASES = {"ALL PRIVILEGES": "ALL", "BINLOG MONITOR": "REPLICATION CLIENT"}


@dataclass(frozen=True)
class Grant:
    revoke: bool
    privs: frozenset[str]  # upper case; "ALL" for ALL [PRIVILEGES]
    column_only: frozenset[str]  # granted on some columns only: not enough to dump
    level: str  # "global", "db", "table", or "routine"
    db: str = ""  # a LIKE pattern at db level (`db\_1`), a name at table level
    table: str = ""


def _unquote(ident: str) -> str:
    if ident.startswith("`") and ident.endswith("`") and len(ident) >= 2:
        return ident[1:-1].replace("``", "`")
    return ident


def _split_privs(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "`'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return [p.strip() for p in out if p.strip()]


def parse_grant(line: str) -> Grant | None:
    """One SHOW GRANTS line; None for role and proxy grants and what is not a grant."""
    m = _GRANT_RE.match(line)
    if m is None:
        return None
    privs: set[str] = set()
    column_only: set[str] = set()
    for elem in _split_privs(m["privs"]):
        name, _, cols = elem.partition("(")
        canon = " ".join(name.upper().split())
        canon = _PRIV_ALIASES.get(canon, canon)
        (column_only if cols else privs).add(canon)
    if "PROXY" in privs:
        return None
    db_raw, tbl_raw = m["db"], m["tbl"]
    if m["kind"] and m["kind"].upper() != "TABLE":
        level = "routine"
    elif db_raw == "*" and tbl_raw in (None, "*"):
        level = "global"
    elif tbl_raw in (None, "*"):
        level = "db"
    else:
        level = "table"
    return Grant(revoke=m["verb"].upper() == "REVOKE", privs=frozenset(privs),
                 column_only=frozenset(column_only), level=level,
                 db=_unquote(db_raw), table=_unquote(tbl_raw or ""))


def _like(pattern: str, name: str) -> bool:
    """MySQL's db-level grant names are LIKE patterns (`db\\_1`, `app%`)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(out), name, re.DOTALL) is not None


class _Grants:
    def __init__(self, lines: Iterable[str]) -> None:
        parsed = [g for g in (parse_grant(line) for line in lines) if g is not None]
        self.grants = [g for g in parsed if not g.revoke]
        self.revokes = [g for g in parsed if g.revoke]  # MySQL 8 partial revokes

    @staticmethod
    def _gives(g: Grant, privs: Iterable[str]) -> bool:
        return "ALL" in g.privs or any(p in g.privs for p in privs)

    def has_global(self, *privs: str) -> bool:
        return any(g.level == "global" and self._gives(g, privs) for g in self.grants)

    def _revoked(self, privs: Sequence[str], schema: str) -> bool:
        return any(r.level == "db" and _like(r.db, schema) and self._gives(r, privs)
                   for r in self.revokes)

    def on_schema(self, schema: str, *privs: str) -> bool:
        if self.has_global(*privs) and not self._revoked(privs, schema):
            return True
        return any(g.level == "db" and _like(g.db, schema) and self._gives(g, privs)
                   for g in self.grants)

    def on_table(self, ref: TableRef, *privs: str) -> bool:
        if self.on_schema(ref.schema, *privs):
            return True
        return any(g.level == "table" and g.db == ref.schema and g.table == ref.table
                   and self._gives(g, privs) for g in self.grants)


# DM's privilege order and spelling (TiDB's PrivilegeType / Priv2Str).
_PRIV_ORDER = ("CREATE", "SELECT", "INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "INDEX",
               "LOCK TABLES", "RELOAD", "REPLICATION CLIENT", "REPLICATION SLAVE")


_PRIV_DISPLAY = {"CREATE": "Create", "SELECT": "Select", "INSERT": "Insert",
                 "UPDATE": "Update", "DELETE": "Delete", "DROP": "Drop", "ALTER": "Alter",
                 "INDEX": "Index"}


def _lacked_as_str(lacked: dict[str, dict[str, set[str]] | None]) -> str:
    """DM's LackedPrivilegesAsStr: `lack of X global (*.*) privilege; ` or
    `lack of Select privilege: {`db`.`t1`, `db`.`t2`; `db2`.`t`}; `."""
    parts: list[str] = []
    for priv in sorted(lacked, key=_PRIV_ORDER.index):
        tables = lacked[priv]
        text = f"lack of {_PRIV_DISPLAY.get(priv, priv)}"
        if tables is None:
            parts.append(f"{text} global (*.*) privilege; ")
            continue
        dbs = [", ".join(str(TableRef(db, t)) for t in sorted(tables[db]))
               for db in sorted(tables)]
        parts.append(f"{text} privilege: {{{'; '.join(dbs)}}}; ")
    return "".join(parts)
