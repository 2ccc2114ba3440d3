"""What a precheck reads from a server before it evaluates anything: variables, grants,
master status, binary logs, and the columns and keys of the migrated tables; one pass of
queries per server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncmy
import asyncmy.errors

from mysqlkit.routing import TableRef, TableRouter
from mysqlkit.upstream import (
    ConnConfig,
    driver_error,
    open_conn,
)


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
class SourceFacts:
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


async def read_server_facts(cfg: ConnConfig, *, master_status: bool, binary_logs: bool,
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


async def read_table_facts(cfg: ConnConfig, router: TableRouter, *, columns: bool,
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
