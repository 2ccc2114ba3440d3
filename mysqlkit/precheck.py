"""Task precheck (DM's `check-task`): privileges, binlog settings, table structures.

`precheck()` gathers what it needs from every server concurrently (one pass of queries per
server, on at most two connections), then evaluates DM's checking items on those facts.
Which items run depends on the task mode, as in DM: binlog items only for modes with a Sync
unit, dump privileges only for modes with a Dump unit, nothing on the sources in `load`
mode (their data comes from data_dir) but their presence in the configuration.

The result renders exactly as DM's: `"pre-check is passed. "` when every item succeeded,
`"fail to check synchronization configuration with type: no errors but some warnings\\n
detail: {json}"` with warnings only, and error 26005 carrying the JSON detail on failure.
The JSON is DM's `checker.Results` (failed and warning items only, at most 10 errors and 10
warnings, tab-indented as Go's json.MarshalIndent(r, "\\t", "\\t") writes it).

A server that cannot be reached yields a failed item carrying the driver's message; the
other items of that server are not evaluated. Nothing here raises for a server problem.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncmy
import asyncmy.errors

from domain.task_models import Task, TaskFullMigrateConf
from events.errors import CHECK_ITEM_NOT_SUPPORTED, PRECHECK_FAILED, DMError
from mysqlkit.routing import TableRef, TableRouter, router_for_source
from mysqlkit.upstream import (
    DEFAULT_CONNECT_TIMEOUT,
    ConnConfig,
    driver_error,
    open_conn,
)

__all__ = [
    "ALL_CHECKING",
    "CHECKING_ITEMS",
    "CHECK_TASK_MSG_HEADER",
    "CHECK_TASK_SUCCESS",
    "OPT_IN_ITEMS",
    "CheckError",
    "CheckResult",
    "PrecheckResult",
    "State",
    "parse_grant",
    "precheck",
    "validate_checking_items",
]

CHECK_TASK_MSG_HEADER = "fail to check synchronization configuration with type"
CHECK_TASK_SUCCESS = "pre-check is passed. "
ALL_CHECKING = "all"

CHECKING_ITEMS = (
    "dump_privilege", "replication_privilege", "target_privilege", "version", "server_id",
    "binlog_enable", "binlog_format", "binlog_row_image", "binlog_db", "meta_position",
    "table_schema", "schema_of_shard_tables", "auto_increment_ID", "online_ddl",
    "conn_number", "primary_key",
)
# Only run when asked for explicitly (DM: an extra checking item of the caller).
OPT_IN_ITEMS = frozenset({"primary_key"})
# DM's physical-import (Lightning) items: accepted in ignore lists, never run here.
_LIGHTNING_ITEMS = frozenset({"empty_region", "region_distribution", "downstream_version",
                              "free_space", "downstream_mutex_features", "target_table_empty"})

_DUMP_MODES = frozenset({"all", "full", "dump"})
_LOAD_MODES = frozenset({"all", "full", "load"})
_SYNC_MODES = frozenset({"all", "incremental"})

# DM's ctl defaults for how many errors/warnings the detail shows.
DEFAULT_ERROR_LIMIT = 10
DEFAULT_WARN_LIMIT = 10

_ACCESS_DENIED_HINT = "Grant the required privileges to the account."


class State(StrEnum):
    SUCCESS = "success"
    FAILURE = "fail"
    WARNING = "warn"


@dataclass
class CheckError:
    severity: State
    short_error: str
    self_: str = ""
    other: str = ""
    instruction: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity.value, "short_error": self.short_error}
        if self.self_:
            out["self"] = self.self_
        if self.other:
            out["other"] = self.other
        if self.instruction:
            out["instruction"] = self.instruction
        return out


@dataclass
class CheckResult:
    """One checker's outcome (DM's checker.Result), with the item name it belongs to."""

    item: str  # the ignore_checking_items name; "" for connection failures
    name: str
    desc: str
    state: State = State.SUCCESS
    errors: list[CheckError] = field(default_factory=list)
    instruction: str = ""
    extra: str = ""
    source: str | None = None  # None: the target, or several sources
    id: int = 0

    def fail(self, message: str, **kw: str) -> CheckResult:
        self.state = State.FAILURE
        self.errors.append(CheckError(State.FAILURE, message, **kw))
        return self

    def warn(self, message: str, **kw: str) -> CheckResult:
        if self.state != State.FAILURE:
            self.state = State.WARNING
        self.errors.append(CheckError(State.WARNING, message, **kw))
        return self

    def to_json(self, errors: list[CheckError] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "desc": self.desc,
                               "state": self.state.value}
        errs = self.errors if errors is None else errors
        if errs:
            out["errors"] = [e.to_json() for e in errs]
        if self.instruction:
            out["instruction"] = self.instruction
        if self.extra:
            out["extra"] = self.extra
        return out


def _go_json(obj: Any) -> str:
    """json.MarshalIndent(obj, "\\t", "\\t") as Go writes it, HTML-safe escapes included."""
    text = json.dumps(obj, indent="\t", ensure_ascii=False).replace("\n", "\n\t")
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


@dataclass
class PrecheckResult:
    results: list[CheckResult] = field(default_factory=list)
    # ignore_checking_items held `all`: DM runs nothing and answers an empty check result.
    skipped_all: bool = False
    error_limit: int = DEFAULT_ERROR_LIMIT
    warn_limit: int = DEFAULT_WARN_LIMIT

    @property
    def errors(self) -> list[CheckResult]:
        return [r for r in self.results if r.state == State.FAILURE]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.state == State.WARNING]

    @property
    def passed(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        ok = sum(r.state == State.SUCCESS for r in self.results)
        return {"passed": self.passed, "total": len(self.results), "successful": ok,
                "failed": len(self.errors), "warning": len(self.warnings)}

    def detail(self) -> dict[str, Any]:
        """DM's checker.Results with only failed/warning items, errors and warnings capped
        at the limits (the summary still counts everything)."""
        warn_left, err_left = self.warn_limit, self.error_limit
        shown: list[dict[str, Any]] = []
        for r in self.results:
            if r.state == State.SUCCESS:
                continue
            if not r.errors:
                if r.state == State.WARNING and warn_left > 0:
                    warn_left -= 1
                    shown.append(r.to_json([]))
                elif r.state == State.FAILURE and err_left > 0:
                    err_left -= 1
                    shown.append(r.to_json([]))
                continue
            kept: list[CheckError] = []
            for e in r.errors:
                if e.severity == State.WARNING and warn_left > 0:
                    warn_left -= 1
                    kept.append(e)
                elif e.severity == State.FAILURE and err_left > 0:
                    err_left -= 1
                    kept.append(e)
            if kept:
                shown.append(r.to_json(kept))
        return {"results": shown, "summary": self.summary()}

    def detail_json(self) -> str:
        return _go_json(self.detail())

    def _failure_message(self) -> str:
        return f"check was failed, please see detail\n detail: {self.detail_json()}"

    def text(self) -> str:
        """The `check_result` string DM answers (for a failure: the error's message)."""
        if self.skipped_all:
            return ""
        if not self.passed:
            return f"{CHECK_TASK_MSG_HEADER}: {self._failure_message()}"
        if all(r.state == State.SUCCESS for r in self.results):
            return CHECK_TASK_SUCCESS
        return (f"{CHECK_TASK_MSG_HEADER}: no errors but some warnings\n"
                f" detail: {self.detail_json()}")

    def to_error(self) -> DMError:
        """26005 with the JSON detail; only meaningful when not passed."""
        return PRECHECK_FAILED(self._failure_message())


# --- grants --------------------------------------------------------------------------------

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


# --- facts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # lower case, e.g. "varchar"
    column_type: str  # lower case, e.g. "varchar(20)", "int(10) unsigned"
    auto_increment: bool


@dataclass
class ServerFacts:
    version: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    grants: list[str] | None = None
    grants_error: str = ""
    master_status: tuple[str, str] | None = None  # (Binlog_Do_DB, Binlog_Ignore_DB)
    master_status_error: str = ""
    binary_logs: dict[str, int] | None = None  # name → size
    binary_logs_error: str = ""
    checkpoints: list[str] = field(default_factory=list)  # target: this task's tables

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in (self.version + self.variables.get("version_comment", "")).lower()


@dataclass
class TableFacts:
    tables: list[TableRef] = field(default_factory=list)  # migrated, sorted
    columns: dict[TableRef, list[Column]] = field(default_factory=dict)
    keys: dict[TableRef, dict[str, bool]] = field(default_factory=dict)  # index → unique


@dataclass
class _SourceFacts:
    name: str
    cfg: ConnConfig
    router: TableRouter
    server: ServerFacts | None = None
    tables: TableFacts | None = None
    error: str = ""  # could not connect (or some query failed outright)


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


async def _rows(conn: asyncmy.Connection, sql: str,
                args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return [tuple(r) for r in await cur.fetchall()]


async def _try_rows(conn: asyncmy.Connection, cfg: ConnConfig,
                    sql: str) -> tuple[list[tuple[Any, ...]] | None, str]:
    """Rows, or the DM-formatted driver error (e.g. access denied) for items to report."""
    try:
        return await _rows(conn, sql), ""
    except asyncmy.errors.MySQLError as exc:
        return None, str(driver_error(exc, cfg))


_VARIABLES = ("version_comment", "server_id", "log_bin", "binlog_format", "binlog_row_image",
              "max_connections")


async def _server_facts(cfg: ConnConfig, *, master_status: bool, binary_logs: bool,
                        connect_timeout: float, meta_schema: str | None = None,
                        task_name: str = "") -> ServerFacts:
    facts = ServerFacts()
    async with open_conn(cfg, connect_timeout=connect_timeout) as conn:
        [(version,)] = await _rows(conn, "SELECT VERSION()")
        facts.version = _text(version)
        marks = ", ".join(["%s"] * len(_VARIABLES))
        rows = await _rows(conn, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({marks})",
                           _VARIABLES)
        facts.variables = {_text(k).lower(): _text(v) for k, v in rows}
        grants, facts.grants_error = await _try_rows(conn, cfg, "SHOW GRANTS")
        if grants is not None:
            facts.grants = [_text(r[0]) for r in grants]
        if master_status:
            rows_ms, facts.master_status_error = await _try_rows(conn, cfg,
                                                                 "SHOW MASTER STATUS")
            if rows_ms is not None:
                # No row when the binlog is off: nothing is filtered then.
                facts.master_status = ((_text(rows_ms[0][2]), _text(rows_ms[0][3]))
                                       if rows_ms else ("", ""))
        if binary_logs:
            rows_bl, facts.binary_logs_error = await _try_rows(conn, cfg, "SHOW BINARY LOGS")
            if rows_bl is not None:
                facts.binary_logs = {_text(r[0]): int(r[1]) for r in rows_bl}
        if meta_schema is not None:
            rows_cp = await _rows(
                conn, "SELECT TABLE_NAME FROM information_schema.TABLES "
                      "WHERE TABLE_SCHEMA = %s", (meta_schema,))
            facts.checkpoints = sorted(
                n for n in (_text(r[0]) for r in rows_cp)
                if n.startswith(f"{task_name}_") and n.endswith("checkpoint"))
    return facts


async def _table_facts(cfg: ConnConfig, router: TableRouter, *, columns: bool,
                       connect_timeout: float) -> TableFacts:
    facts = TableFacts()
    async with open_conn(cfg, connect_timeout=connect_timeout) as conn:
        rows = await _rows(conn, "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                                 "WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')")
        facts.tables = sorted(ref for ref in (TableRef(_text(s), _text(t)) for s, t in rows)
                              if router.route(ref.schema, ref.table) is not None)
        schemas = sorted({t.schema for t in facts.tables})
        if not columns or not schemas:
            return facts
        wanted = set(facts.tables)
        marks = ", ".join(["%s"] * len(schemas))
        rows = await _rows(
            conn, "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, EXTRA "
                  f"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({marks}) "
                  "ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION", schemas)
        for s, t, name, data_type, column_type, extra in rows:
            ref = TableRef(_text(s), _text(t))
            if ref in wanted:
                facts.columns.setdefault(ref, []).append(Column(
                    _text(name), _text(data_type).lower(), _text(column_type).lower(),
                    "auto_increment" in _text(extra).lower()))
        rows = await _rows(
            conn, "SELECT DISTINCT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE "
                  f"FROM information_schema.STATISTICS WHERE TABLE_SCHEMA IN ({marks})",
            schemas)
        for s, t, index, non_unique in rows:
            ref = TableRef(_text(s), _text(t))
            if ref in wanted:
                facts.keys.setdefault(ref, {})[_text(index)] = int(non_unique) == 0
    return facts


# --- items ---------------------------------------------------------------------------------


def _address(cfg: ConnConfig) -> str:
    return f"address of db instance - {cfg.host}:{cfg.port}"


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def check_version(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                  ) -> CheckResult:
    r = CheckResult("version", "mysql_version", "check whether mysql version is satisfied",
                    extra=_address(cfg), source=source)
    if facts.is_mariadb:
        return r.warn("Migrating from MariaDB is experimentally supported")
    v = _version_tuple(facts.version)
    if v is None:
        return r.fail(f"can not parse version {facts.version!r}")
    if v < (5, 6, 0):
        return r.warn(f"version suggested at least 5.6.0 but got {v[0]}.{v[1]}.{v[2]}")
    if v >= (8, 1, 0):
        return r.warn(f"version suggested less than 8.1.0 but got {v[0]}.{v[1]}.{v[2]}")
    return r


def check_server_id(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                    ) -> CheckResult:
    r = CheckResult("server_id", "mysql_server_id",
                    "check whether mysql server_id has been greater than 0",
                    extra=_address(cfg), source=source)
    value = facts.variables.get("server_id", "")
    if value == "":
        r.instruction = "please set server_id in your database"
        return r.fail("server_id not set")
    if value == "0":
        r.instruction = "please set server_id greater than 0"
        return r.fail("server_id is 0")
    return r


def check_binlog_enable(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                        ) -> CheckResult:
    r = CheckResult("binlog_enable", "mysql_binlog_enable",
                    "check whether mysql binlog is enabled", extra=_address(cfg), source=source)
    value = facts.variables.get("log_bin", "")
    if value.upper() not in ("ON", "1"):
        r.instruction = ("ref document: https://dev.mysql.com/doc/refman/5.7/en/"
                         "replication-howto-masterbaseconfig.html")
        return r.fail(f"log_bin is {value or 'OFF'}, and should be ON")
    return r


def check_binlog_format(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                        ) -> CheckResult:
    r = CheckResult("binlog_format", "mysql_binlog_format",
                    "check whether mysql binlog_format is ROW", extra=_address(cfg),
                    source=source)
    value = facts.variables.get("binlog_format", "")
    if value.upper() != "ROW":
        r.instruction = "please execute 'set global binlog_format=ROW;'"
        return r.fail(f"binlog_format is {value}, and should be ROW")
    return r


def check_binlog_row_image(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                           ) -> CheckResult:
    r = CheckResult("binlog_row_image", "mysql_binlog_row_image",
                    "check whether mysql binlog_row_image is FULL", extra=_address(cfg),
                    source=source)
    # Servers without the variable (MySQL < 5.6.2, MariaDB < 10.1.6) always log full rows.
    value = facts.variables.get("binlog_row_image")
    if value is not None and value.upper() != "FULL":
        r.instruction = "please execute 'set global binlog_row_image = FULL;'"
        return r.fail(f"binlog_row_image is {value}, and should be FULL")
    return r


def check_replication_privilege(facts: ServerFacts, cfg: ConnConfig,
                                source: str | None = None) -> CheckResult:
    r = CheckResult("replication_privilege", "source db replication privilege checker",
                    "check replication privileges of source DB", extra=_address(cfg),
                    source=source)
    if facts.grants is None:
        return r.fail(facts.grants_error)
    grants = _Grants(facts.grants)
    lacked: dict[str, dict[str, set[str]] | None] = {}
    # SUPER also allows SHOW MASTER STATUS (DM accepts it for REPLICATION CLIENT).
    if not grants.has_global("REPLICATION CLIENT", "SUPER"):
        lacked["REPLICATION CLIENT"] = None
    if not grants.has_global("REPLICATION SLAVE"):
        lacked["REPLICATION SLAVE"] = None
    if lacked:
        r.instruction = _ACCESS_DENIED_HINT
        return r.fail(_lacked_as_str(lacked))
    return r


def check_dump_privilege(facts: ServerFacts, tables: Sequence[TableRef], consistency: str,
                         cfg: ConnConfig, source: str | None = None) -> CheckResult:
    """SELECT on every migrated table, plus what the consistency mode locks with: RELOAD
    for FTWRL (flush; snapshot's BACKUP STAGE too), LOCK TABLES for lock; `auto` falls back
    from FTWRL to LOCK TABLES in dmray's dump, so either will do."""
    r = CheckResult("dump_privilege", "source db dump privilege checker",
                    "check dump privileges of source DB", extra=_address(cfg), source=source)
    if facts.grants is None:
        return r.fail(facts.grants_error)
    grants = _Grants(facts.grants)
    lacked: dict[str, dict[str, set[str]] | None] = {}
    no_select: dict[str, set[str]] = defaultdict(set)
    for ref in tables:
        if not grants.on_table(ref, "SELECT"):
            no_select[ref.schema].add(ref.table)
    if no_select:
        lacked["SELECT"] = dict(no_select)
    # FLUSH_TABLES is MySQL 8's dynamic privilege that allows FTWRL on its own.
    reload_ok = grants.has_global("RELOAD", "FLUSH_TABLES")
    schemas = sorted({t.schema for t in tables})
    lock_ok = all(grants.on_schema(s, "LOCK TABLES") for s in schemas)
    if consistency in ("flush", "snapshot") and not reload_ok:
        lacked["RELOAD"] = None
    elif consistency == "lock" and not lock_ok:
        lacked["LOCK TABLES"] = None
    elif consistency == "auto" and not (reload_ok or lock_ok):
        lacked["RELOAD"] = None
    if lacked:
        r.instruction = "Please grant the required privileges to the account."
        return r.fail(_lacked_as_str(lacked))
    return r


def check_target_privilege(facts: ServerFacts, cfg: ConnConfig) -> CheckResult:
    r = CheckResult("target_privilege", "target db privilege checker",
                    "check privileges of target DB", extra=_address(cfg))
    if facts.grants is None:
        return r.fail(facts.grants_error)
    grants = _Grants(facts.grants)
    lacked: dict[str, dict[str, set[str]] | None] = {
        p: None for p in ("CREATE", "SELECT", "INSERT", "UPDATE", "DELETE", "ALTER", "DROP",
                          "INDEX") if not grants.has_global(p)}
    if lacked:
        # As DM: which tables the binlog will touch is not known exactly, so only a warning.
        r.instruction = "You need grant related privileges."
        return r.warn(_lacked_as_str(lacked))
    return r


def check_binlog_db(facts: ServerFacts, schemas: Iterable[str], cfg: ConnConfig,
                    source: str | None = None) -> CheckResult:
    r = CheckResult("binlog_db", "binlog_do_db/binlog_ignore_db check",
                    "check whether migrated dbs are in binlog_do_db/binlog_ignore_db",
                    extra=_address(cfg), source=source)
    if facts.master_status is None:
        return r.fail(facts.master_status_error)
    do_db, ignore_db = (s.replace(" ", "") for s in facts.master_status)
    wanted = set(schemas)
    # The server applies binlog-do-db when set and then ignores binlog-ignore-db.
    if do_db:
        missing = sorted(wanted - set(do_db.split(",")))
        if missing:
            r.extra = f"these dbs [{','.join(missing)}] are not in binlog_do_db[{do_db}]"
            return r.fail(r.extra)
    elif ignore_db:
        for db in ignore_db.split(","):
            if db in wanted:
                r.extra = f"db [{db}] is in binlog_ignore_db[{ignore_db}]"
                return r.fail(r.extra)
    return r


_MARIADB_GTID_RE = re.compile(r"^\s*(\d+-\d+-\d+\s*(,\s*\d+-\d+-\d+\s*)*)?$")
_MYSQL_GTID_RE = re.compile(
    r"^\s*([0-9a-fA-F-]{36}(:\d+(-\d+)?)+\s*(,\s*[0-9a-fA-F-]{36}(:\d+(-\d+)?)+\s*)*)?$")


def check_meta_position(facts: ServerFacts, binlog_name: str | None, binlog_pos: int | None,
                        binlog_gtid: str | None, cfg: ConnConfig,
                        source: str | None = None) -> CheckResult:
    r = CheckResult("meta_position", "meta position check",
                    "check whether meta position is valid for db", extra=_address(cfg),
                    source=source)
    if binlog_gtid:
        regex = _MARIADB_GTID_RE if facts.is_mariadb else _MYSQL_GTID_RE
        if not regex.match(binlog_gtid):
            r.instruction = "Please check the `binlog_gtid` of the source in the task."
            r.fail(f"binlog_gtid {binlog_gtid!r} is not a valid "
                   f"{'MariaDB' if facts.is_mariadb else 'MySQL'} GTID set")
    if binlog_name:
        if facts.binary_logs is None:
            return r.fail(facts.binary_logs_error)
        size = facts.binary_logs.get(binlog_name)
        r.instruction = "Please check the `binlog_name`/`binlog_pos` of the source in the task."
        if size is None:
            r.fail(f"binlog file {binlog_name} does not exist on the source, whose binlog files "
                   f"are {', '.join(facts.binary_logs) or 'none'}")
        elif binlog_pos is not None and binlog_pos > size:
            r.fail(f"binlog position {binlog_pos} is beyond the end of {binlog_name} "
                   f"({size} bytes)")
    if r.state == State.SUCCESS:
        r.instruction = ""
    return r


def _conn_result(item_name: str, facts: ServerFacts, needed: int, side: str, unit: str,
                 cfg: ConnConfig, source: str | None) -> CheckResult:
    r = CheckResult("conn_number", item_name,
                    f"check if user-specified amount of connection exceeds {side}'s maximum",
                    source=source)
    try:
        max_conn = int(facts.variables.get("max_connections", ""))
    except ValueError:
        return r.fail(f"can not read max_connections of {cfg.host}:{cfg.port}")
    if needed > max_conn:
        r.instruction = "set larger max_connections or reduce the pool size of dm"
        return r.fail(f"{side}'s max_connections: {max_conn} is less than the amount {unit} "
                      f"needs: {needed}")
    return r


def check_table_schema(table_facts: dict[str, TableFacts]) -> CheckResult:
    r = CheckResult("table_schema", "table structure compatibility check",
                    "check compatibility of table structure")
    for tf in table_facts.values():
        for ref in tf.tables:
            if ref not in tf.columns:
                continue  # dropped since it was listed
            if not any(tf.keys.get(ref, {}).values()):
                r.warn(f"table {ref} primary/unique key does not exist")
    if r.errors:
        r.instruction = ("You need to set primary/unique keys for the table. Otherwise "
                         "replication efficiency might become very low and exactly-once "
                         "replication cannot be guaranteed.")
    return r


def check_primary_key(table_facts: dict[str, TableFacts]) -> CheckResult:
    r = CheckResult("primary_key", "primary key existence check",
                    "check existence of primary key in upstream tables")
    for tf in table_facts.values():
        for ref in tf.tables:
            if ref in tf.columns and "PRIMARY" not in tf.keys.get(ref, {}):
                r.fail(f"table {ref} primary key does not exist")
    if r.errors:
        r.instruction = ("You need to set primary key for the upstream table. Otherwise "
                         "replication efficiency may be low, and correctness (e.g., "
                         "deduplication and idempotency) may be affected if no primary key "
                         "exists.")
    return r


ShardMember = tuple[str, TableRef, list[Column]]


def _go_list(items: Iterable[str]) -> str:
    return "[" + " ".join(items) + "]"


def check_pessimistic_shard(target: TableRef, members: Sequence[ShardMember]) -> CheckResult:
    """Every shard must have the columns of the first one: same names, same types."""
    r = CheckResult("schema_of_shard_tables", f"sharding table {target} consistency checking",
                    "check consistency of sharding table structures",
                    extra=f"sourceID {members[0][0]} on sharding {target}")
    first_source, first_table, first_cols = members[0]
    for source, table, cols in members[1:]:
        err: CheckError | None = None
        if len(cols) != len(first_cols):
            err = CheckError(
                State.FAILURE,
                f"column length mismatch (self: {len(first_cols)} vs other: {len(cols)})",
                self_=f"sourceID {first_source} table {first_table} columns "
                      f"{_go_list(c.name.lower() for c in first_cols)}",
                other=f"sourceID {source} table {table} columns "
                      f"{_go_list(c.name.lower() for c in cols)}")
        else:
            for a, b in zip(first_cols, cols, strict=True):
                if (a.name.lower(), a.column_type) == (b.name.lower(), b.column_type):
                    continue
                # Same column and base type, other length/precision: the usual shard drift.
                same_base = a.name.lower() == b.name.lower() and a.data_type == b.data_type
                err = CheckError(
                    State.FAILURE,
                    "different column definition (column length mismatch)" if same_base
                    else "different column definition",
                    self_=f"sourceID {first_source} table {first_table} column "
                          f"{a.name.lower()} {a.column_type}",
                    other=f"sourceID {source} table {table} column "
                          f"{b.name.lower()} {b.column_type}")
                break
        if err is not None:
            r.state = State.FAILURE
            r.errors.append(err)
    if r.state == State.FAILURE:
        r.extra = f"error on sharding {target}"
        r.instruction = "please set same table structure for sharding tables"
    return r


def _base_type(c: Column) -> tuple[str, bool]:
    return c.data_type, "unsigned" in c.column_type


def check_optimistic_shard(target: TableRef, members: Sequence[ShardMember]) -> CheckResult:
    """Optimistic shards may differ (columns added/dropped, lengths), but one column name
    must not carry incompatible types: the structures must be joinable."""
    r = CheckResult("schema_of_shard_tables",
                    f"optimistic sharding table {target} consistency checking",
                    "check consistency of sharding table structures for Optimistic Sharding "
                    "Merge", extra=f"sharding {target}")
    seen: dict[str, tuple[str, TableRef, Column]] = {}
    for source, table, cols in members:
        for c in cols:
            key = c.name.lower()
            if key not in seen:
                seen[key] = (source, table, c)
                continue
            s0, t0, c0 = seen[key]
            if _base_type(c0) != _base_type(c):
                r.fail(f"incompatible column definition of {key}: {c0.column_type} vs "
                       f"{c.column_type}",
                       self_=f"sourceID {s0} table {t0} column {key} {c0.column_type}",
                       other=f"sourceID {source} table {table} column {key} {c.column_type}")
    if r.state == State.FAILURE:
        r.extra = f"fail to join table info of sharding {target}"
        r.instruction = "please set compatible table structures for sharding tables"
    return r


def check_auto_increment(target: TableRef, members: Sequence[ShardMember]) -> CheckResult:
    r = CheckResult("auto_increment_ID", f"sharding table {target} auto-increment key checking",
                    "check whether sharding tables have auto-increment keys")
    for source, table, cols in members:
        if any(c.auto_increment for c in cols):
            r.warn(f"sourceID {source} table {table} of sharding {target} have auto-increment "
                   f"key, please make sure them don't conflict in target table!")
    if r.errors:
        r.extra = "auto-increment key checking"
        r.instruction = (
            "If happen conflict, please handle it by yourself. You can refer to "
            "https://docs.pingcap.com/tidb-data-migration/stable/shard-merge-best-practices/"
            "#handle-conflicts-between-primary-keys-or-unique-indexes-across-multiple-sharded-"
            "tables")
    return r


# --- orchestration -------------------------------------------------------------------------


def validate_checking_items(items: Iterable[str] | None) -> None:
    """Unknown names in ignore_checking_items are a configuration error, as in DM."""
    for item in items or ():
        if not item.strip():  # an empty item names nothing (DM's clients send them)
            continue
        if item != ALL_CHECKING and item not in CHECKING_ITEMS and item not in _LIGHTNING_ITEMS:
            raise CHECK_ITEM_NOT_SUPPORTED(
                item, "supported items: " + ", ".join((ALL_CHECKING, *CHECKING_ITEMS)))


def _connection_failure(what: str, cfg: ConnConfig, message: str,
                        source: str | None) -> CheckResult:
    r = CheckResult("", f"{what} connection", f"check whether {what} can be connected",
                    extra=_address(cfg), source=source)
    r.instruction = "Please check the database connection and the database config."
    return r.fail(message)


async def precheck(
    task: Task,
    sources: dict[str, ConnConfig],
    target: ConnConfig,
    *,
    extra_items: Iterable[str] = (),
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    error_limit: int = DEFAULT_ERROR_LIMIT,
    warn_limit: int = DEFAULT_WARN_LIMIT,
) -> PrecheckResult:
    """Run the task's precheck against its sources (by source name) and its target.

    `extra_items` opts in to items that never run by default (`primary_key`). Raises only
    for an invalid task (unknown checking item, unknown binlog filter rule name).
    """
    ignore = set(task.ignore_checking_items or ())
    extra = set(extra_items)
    validate_checking_items(ignore)
    validate_checking_items(extra)
    result = PrecheckResult(error_limit=error_limit, warn_limit=warn_limit)
    if ALL_CHECKING in ignore:
        result.skipped_all = True
        return result
    mode = task.task_mode
    active = {i for i in CHECKING_ITEMS if i not in OPT_IN_ITEMS} | extra
    active -= ignore
    if mode not in _DUMP_MODES:
        active -= {"dump_privilege"}
    if mode not in _SYNC_MODES:
        active -= {"server_id", "binlog_enable", "binlog_format", "binlog_row_image",
                   "replication_privilege", "binlog_db", "online_ddl"}
    if mode != "incremental":
        # DM only honours the binlog meta in incremental mode; full modes take the dump's.
        active -= {"meta_position"}
    # Shards are compared on a fresh task only: later, structures may differ legitimately
    # (DDL not yet replayed on every shard), and in incremental mode SHOW CREATE TABLE is
    # not the structure at the starting position.
    shard_items = {"schema_of_shard_tables", "auto_increment_ID"} & active
    if not task.shard_mode or mode == "incremental":
        active -= shard_items
    if mode == "load":
        # The data comes from data_dir: the sources are not read at all.
        active -= {"version", "table_schema", "schema_of_shard_tables", "auto_increment_ID",
                   "primary_key"}
    use_target = mode != "dump" and (
        "target_privilege" in active or ("conn_number" in active and mode in _LOAD_MODES)
        or bool(shard_items & active))
    source_items = active - {"target_privilege"}
    if mode == "load":
        source_items = set()
    elif "conn_number" in source_items and mode not in _DUMP_MODES:
        source_items -= {"conn_number"}

    full = task.source_config.full_migrate_conf or TaskFullMigrateConf()
    consistency = full.consistency or "auto"
    confs = task.source_config.source_conf
    routers = {c.source_name: router_for_source(task, c.source_name) for c in confs}

    missing = [c.source_name for c in confs if c.source_name not in sources]
    present = [c for c in confs if c.source_name in sources]
    need_tables = bool(source_items & {"dump_privilege", "binlog_db", "table_schema",
                                       "primary_key", "schema_of_shard_tables",
                                       "auto_increment_ID"})
    need_columns = bool(source_items & {"table_schema", "primary_key",
                                        "schema_of_shard_tables", "auto_increment_ID"})
    need_server = bool(source_items - {"table_schema", "primary_key",
                                       "schema_of_shard_tables", "auto_increment_ID"})

    async def gather_source(name: str) -> _SourceFacts:
        sf = _SourceFacts(name, sources[name], routers[name])
        jobs: list[Any] = []
        if need_server:
            jobs.append(_server_facts(sf.cfg, master_status="binlog_db" in source_items,
                                      binary_logs="meta_position" in source_items,
                                      connect_timeout=connect_timeout))
        if need_tables:
            jobs.append(_table_facts(sf.cfg, sf.router, columns=need_columns,
                                     connect_timeout=connect_timeout))
        done = await asyncio.gather(*jobs, return_exceptions=True)
        for value in done:
            if isinstance(value, DMError):
                sf.error = sf.error or str(value)
            elif isinstance(value, BaseException):
                raise value
            elif isinstance(value, ServerFacts):
                sf.server = value
            else:
                sf.tables = value
        return sf

    async def gather_target() -> ServerFacts | DMError | None:
        if not use_target:
            return None
        try:
            return await _server_facts(
                target, master_status=False, binary_logs=False, connect_timeout=connect_timeout,
                meta_schema=task.meta_schema if shard_items & active else None,
                task_name=task.name)
        except DMError as exc:
            return exc

    target_facts, source_facts = await asyncio.gather(
        gather_target(), asyncio.gather(*(gather_source(c.source_name) for c in present)))
    facts_by_source = {sf.name: sf for sf in source_facts}
    results: list[CheckResult] = []

    for name in missing:
        results.append(CheckResult("", f"source {name} existence",
                                   "check whether the source is configured",
                                   source=name).fail(f"source {name} not exists"))

    # Target items first, as DM orders them.
    if isinstance(target_facts, DMError):
        results.append(_connection_failure("target db", target, str(target_facts), None))
    elif target_facts is not None:
        if "conn_number" in active and mode in _LOAD_MODES:
            needed = sum(full.import_threads + 1 for _ in confs)
            results.append(_conn_result("loader_conn_amount_checker", target_facts, needed,
                                        "downstream", "loader", target, None))
        if "target_privilege" in active:
            results.append(check_target_privilege(target_facts, target))

    for conf in present:
        sf = facts_by_source[conf.source_name]
        name, cfg = sf.name, sf.cfg
        if sf.error:
            results.append(_connection_failure(f"source {name}", cfg, sf.error, name))
            continue
        srv, tf = sf.server, sf.tables
        tables = tf.tables if tf is not None else []
        if srv is None:
            continue
        if "conn_number" in source_items:
            results.append(_conn_result("dumper_conn_amount_checker", srv,
                                        full.export_threads + 2, "upstream", "dumper", cfg,
                                        name))
        if "version" in source_items:
            results.append(check_version(srv, cfg, name))
        if "dump_privilege" in source_items:
            results.append(check_dump_privilege(srv, tables, consistency, cfg, name))
        if "server_id" in source_items:
            results.append(check_server_id(srv, cfg, name))
        if "binlog_enable" in source_items:
            results.append(check_binlog_enable(srv, cfg, name))
        if "binlog_format" in source_items:
            results.append(check_binlog_format(srv, cfg, name))
        if "binlog_row_image" in source_items:
            results.append(check_binlog_row_image(srv, cfg, name))
        if "replication_privilege" in source_items:
            results.append(check_replication_privilege(srv, cfg, name))
        if "binlog_db" in source_items:
            results.append(check_binlog_db(srv, {t.schema for t in tables}, cfg, name))
        if "meta_position" in source_items and (conf.binlog_name or conf.binlog_gtid):
            results.append(check_meta_position(srv, conf.binlog_name, conf.binlog_pos,
                                               conf.binlog_gtid, cfg, name))

    table_facts = {n: sf.tables for n, sf in facts_by_source.items()
                   if sf.tables is not None and not sf.error}
    if "table_schema" in source_items and table_facts:
        results.append(check_table_schema(table_facts))

    fresh = not (isinstance(target_facts, ServerFacts) and target_facts.checkpoints)
    if source_items & shard_items and fresh:
        groups: dict[TableRef, list[ShardMember]] = defaultdict(list)
        for conf in present:
            tf = table_facts.get(conf.source_name)
            if tf is None:
                continue
            router = routers[conf.source_name]
            for ref in tf.tables:
                tgt = router.route(ref.schema, ref.table)
                if tgt is not None and ref in tf.columns:
                    groups[tgt].append((conf.source_name, ref, tf.columns[ref]))
        for tgt in sorted(groups):
            members = groups[tgt]
            if len(members) <= 1:
                continue
            if "schema_of_shard_tables" in source_items:
                check = (check_pessimistic_shard if task.shard_mode == "pessimistic"
                         else check_optimistic_shard)
                results.append(check(tgt, members))
            if "auto_increment_ID" in source_items:
                results.append(check_auto_increment(tgt, members))

    if "primary_key" in source_items and table_facts:
        results.append(check_primary_key(table_facts))

    for i, r in enumerate(results):
        r.id = i
    result.results = results
    return result
