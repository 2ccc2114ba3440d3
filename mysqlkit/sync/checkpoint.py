"""The syncer's checkpoints in the target's meta schema (`<meta>.<task>_syncer_checkpoint`).

The columns follow DM's table of the same name. One *global* row per source (cp_schema and
cp_table empty, is_global=1) holds the position the sync resumes from and the schema
tracker as of that position (table_info, JSON). One *lane* row per applier
(cp_schema='', cp_table='lane N', is_global=0) is upserted in the same transaction as each
batch that lane applies: after a crash the largest lane position tells how far data may
already have been applied, i.e. where the replay from the global checkpoint may stop being
in safe mode (DM's exit_safe_binlog_*).

Safe mode cannot make a replay idempotent for a table without a usable key (no primary
key and no unique key of NOT NULL columns): a replayed insert would add the row twice.
Such a table's changes are applied in order on one lane, and a *table* row
(cp_schema/cp_table = the source table) written in the same transaction records the last
change applied: the transaction's start position and the change's ordinal in it
(table_row). A replay skips exactly the changes up to there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncmy
import orjson

from mysqlkit import upstream
from mysqlkit.position import BinlogPosition
from mysqlkit.sqlquote import quote_ident

GLOBAL = ("", "")


def table_name(meta: str, task: str) -> str:
    return f"{quote_ident(meta)}.{quote_ident(task + '_syncer_checkpoint')}"


def pos_key(p: BinlogPosition) -> tuple[str, int]:
    """Order of positions within one source: binlog file names share a base name and a
    zero-padded sequence number, so they sort as text."""
    return (p.binlog_name, p.binlog_pos)


def later(a: BinlogPosition | None, b: BinlogPosition | None) -> BinlogPosition | None:
    if a is None or not a.binlog_name:
        return b
    if b is None or not b.binlog_name:
        return a
    return a if pos_key(a) >= pos_key(b) else b


# A change's place in the binlog: its transaction's start (file, pos) and its ordinal.
ChangeId = tuple[str, int, int]


@dataclass(frozen=True)
class SyncCheckpoint:
    position: BinlogPosition
    exit_safe: BinlogPosition | None  # replay up to here in safe mode
    tracker: dict[str, Any] | None  # SchemaTracker.to_dict() as of `position`
    # keyless tables: the last change applied (see the module doc)
    tables: dict[tuple[str, str], ChangeId] = field(default_factory=dict)


async def ensure_table(conn: asyncmy.Connection, meta: str, task: str) -> str:
    table = table_name(meta, task)
    async with conn.cursor() as cur:
        await cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(meta)}")
        await cur.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " id VARCHAR(255) NOT NULL, cp_schema VARCHAR(255) NOT NULL,"
            " cp_table VARCHAR(255) NOT NULL, binlog_name VARCHAR(255),"
            " binlog_pos BIGINT UNSIGNED, binlog_gtid TEXT,"
            " exit_safe_binlog_name VARCHAR(255) DEFAULT '',"
            " exit_safe_binlog_pos BIGINT UNSIGNED DEFAULT 0, exit_safe_binlog_gtid TEXT,"
            " table_info LONGBLOB, is_global BOOLEAN, table_row BIGINT NOT NULL DEFAULT 0,"
            " create_time TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
            " update_time TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
            "  ON UPDATE CURRENT_TIMESTAMP(6),"
            " UNIQUE KEY uk_id_schema_table (id, cp_schema, cp_table)"
            ") DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    return table


async def load(target: upstream.ConnConfig, meta: str, task: str,
               source: str) -> SyncCheckpoint | None:
    async with upstream.open_conn(target) as conn:
        table = await ensure_table(conn, meta, task)
        rows = await upstream.fetchall(
            conn, f"SELECT cp_schema, cp_table, binlog_name, binlog_pos, binlog_gtid,"
                  f" exit_safe_binlog_name, exit_safe_binlog_pos, exit_safe_binlog_gtid,"
                  f" table_info, is_global, table_row FROM {table} WHERE id = %s", (source,))
    glob: SyncCheckpoint | None = None
    exit_safe: BinlogPosition | None = None
    tables: dict[tuple[str, str], ChangeId] = {}
    for r in rows:
        if upstream.as_text(r[0]):  # a keyless table's last applied change
            tables[(upstream.as_text(r[0]), upstream.as_text(r[1]))] = (
                upstream.as_text(r[2] or ""), int(r[3] or 0), int(r[10] or 0))
            continue
        pos = BinlogPosition(upstream.as_text(r[2] or ""), int(r[3] or 0),
                             upstream.as_text(r[4] or ""))
        if r[9]:
            es = BinlogPosition(upstream.as_text(r[5] or ""), int(r[6] or 0),
                                upstream.as_text(r[7] or ""))
            tracker = orjson.loads(r[8]) if r[8] else None
            glob = SyncCheckpoint(pos, es if es.binlog_name else None, tracker)
            exit_safe = later(exit_safe, glob.exit_safe)
        else:
            exit_safe = later(exit_safe, pos)
    if glob is None:
        return None
    if exit_safe is not None and pos_key(exit_safe) < pos_key(glob.position):
        exit_safe = None
    return SyncCheckpoint(glob.position, exit_safe, glob.tracker, tables)


def save_sql(table: str, source: str, pos: BinlogPosition, exit_safe: BinlogPosition | None,
             tracker: dict[str, Any] | None) -> tuple[str, tuple[Any, ...]]:
    """The global checkpoint upsert (run it in the transaction it must commit with)."""
    es = exit_safe or BinlogPosition("", 0, "")
    info = orjson.dumps(tracker) if tracker is not None else None
    return (f"INSERT INTO {table} (id, cp_schema, cp_table, binlog_name, binlog_pos, "
            f"binlog_gtid, exit_safe_binlog_name, exit_safe_binlog_pos, exit_safe_binlog_gtid,"
            f" table_info, is_global) VALUES (%s, '', '', %s, %s, %s, %s, %s, %s, %s, 1) "
            f"ON DUPLICATE KEY UPDATE binlog_name = VALUES(binlog_name), "
            f"binlog_pos = VALUES(binlog_pos), binlog_gtid = VALUES(binlog_gtid), "
            f"exit_safe_binlog_name = VALUES(exit_safe_binlog_name), "
            f"exit_safe_binlog_pos = VALUES(exit_safe_binlog_pos), "
            f"exit_safe_binlog_gtid = VALUES(exit_safe_binlog_gtid), "
            f"table_info = COALESCE(VALUES(table_info), table_info)",
            (source, pos.binlog_name, pos.binlog_pos, pos.gtid, es.binlog_name, es.binlog_pos,
             es.gtid, info))


def lane_sql(table: str, source: str, lane: int, pos: BinlogPosition) -> str:
    """A lane's applied position, as SQL text (it is appended to every batch, so it is
    rendered once per batch without a round trip for parameters)."""
    return (f"INSERT INTO {table} (id, cp_schema, cp_table, binlog_name, binlog_pos, "
            f"binlog_gtid, is_global) VALUES ({_lit(source)}, '', 'lane {lane}', "
            f"{_lit(pos.binlog_name)}, {pos.binlog_pos}, {_lit(pos.gtid)}, 0) "
            f"ON DUPLICATE KEY UPDATE binlog_name = VALUES(binlog_name), "
            f"binlog_pos = VALUES(binlog_pos), binlog_gtid = VALUES(binlog_gtid)")


def table_sql(table: str, source: str, schema: str, name: str, change: ChangeId) -> str:
    """A keyless table's last applied change, as SQL text (in the batch's transaction)."""
    return (f"INSERT INTO {table} (id, cp_schema, cp_table, binlog_name, binlog_pos, "
            f"table_row, is_global) VALUES ({_lit(source)}, {_lit(schema)}, {_lit(name)}, "
            f"{_lit(change[0])}, {change[1]}, {change[2]}, 0) ON DUPLICATE KEY UPDATE "
            f"binlog_name = VALUES(binlog_name), binlog_pos = VALUES(binlog_pos), "
            f"table_row = VALUES(table_row)")


def _lit(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def save(target: upstream.ConnConfig, meta: str, task: str, source: str,
               pos: BinlogPosition, exit_safe: BinlogPosition | None,
               tracker: dict[str, Any] | None) -> None:
    async with upstream.open_conn(target) as conn:
        table = await ensure_table(conn, meta, task)
        sql, args = save_sql(table, source, pos, exit_safe, tracker)
        async with conn.cursor() as cur:
            await cur.execute(sql, args)
        await conn.commit()


async def drop(target: upstream.ConnConfig, meta: str, task: str, source: str | None) -> None:
    """remove_meta for one source, or the whole table when the task is deleted."""
    async with upstream.open_conn(target) as conn, conn.cursor() as cur:
        if source is None:
            await cur.execute(f"DROP TABLE IF EXISTS {table_name(meta, task)}")
            return
        table = await ensure_table(conn, meta, task)
        await cur.execute(f"DELETE FROM {table} WHERE id = %s", (source,))
