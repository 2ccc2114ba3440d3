"""The target's meta schema (a task's `meta_schema`, "dm_meta" by default): every table
dmray keeps next to the migrated data, and all the SQL that reads or writes them.

- `<task>_loader_checkpoint`: one row per loaded chunk (source, schema, table, chunk
  index), inserted in the transaction that loads the chunk, so a restarted load skips
  exactly the chunks that are in the target;
- `<task>_loader_deferred_index`: per (source, target table) the secondary indexes that
  were left out when the table was created (see mysqlkit.full.deferred_index), written
  before the table is created and deleted once the indexes are added back;
- `<task>_syncer_checkpoint` and its companions: the syncer's positions and schema
  tracker, in `mysqlkit.sync.checkpoint` (written with the changes they cover).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncmy

from mysqlkit import upstream
from mysqlkit.sqlquote import quote_ident
from mysqlkit.sync import checkpoint as sync_checkpoint
from mysqlkit.upstream import as_text, fetchall

__all__ = [
    "chunk_done_sql",
    "deferred_marks_table",
    "done_chunks",
    "drop_deferred_marks",
    "drop_task_meta",
    "ensure_deferred_marks",
    "ensure_loader_checkpoints",
    "loader_checkpoint_table",
    "mark_deferred",
    "read_deferred_marks",
    "unmark_deferred",
]

TableKey = tuple[str, str]  # target (schema, table)
ChunkKey = tuple[str, str, int]  # source (schema, table, chunk index)


# --- loader checkpoints ----------------------------------------------------------------------


def loader_checkpoint_table(meta: str, task: str) -> str:
    return f"{quote_ident(meta)}.{quote_ident(task + '_loader_checkpoint')}"


async def ensure_loader_checkpoints(target: upstream.ConnConfig, meta: str, task: str) -> str:
    table = loader_checkpoint_table(meta, task)
    async with upstream.open_conn(target) as conn, conn.cursor() as cur:
        await cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(meta)}")
        await cur.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " source_name VARCHAR(255) NOT NULL, schema_name VARCHAR(255) NOT NULL,"
            " table_name VARCHAR(255) NOT NULL, chunk_index INT NOT NULL,"
            " row_count BIGINT NOT NULL, byte_count BIGINT NOT NULL,"
            " finished_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
            " PRIMARY KEY (source_name, schema_name, table_name, chunk_index)"
            ") DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    return table


async def done_chunks(target: upstream.ConnConfig, meta: str, task: str,
                      source: str) -> dict[ChunkKey, tuple[int, int]]:
    """The chunks of `source` in the target: (rows, bytes) per chunk."""
    table = await ensure_loader_checkpoints(target, meta, task)
    async with upstream.open_conn(target) as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT schema_name, table_name, chunk_index, row_count, byte_count "
                          f"FROM {table} WHERE source_name = %s", (source,))
        rows = await cur.fetchall()
    return {(r[0], r[1], int(r[2])): (int(r[3]), int(r[4])) for r in rows}


def chunk_done_sql(table: str, source: str, chunk: ChunkKey, rows: int,
                   nbytes: int) -> tuple[str, tuple[Any, ...]]:
    """The row that marks a chunk loaded; run it in the chunk's own transaction."""
    return (
        f"INSERT INTO {table} (source_name, schema_name, table_name, chunk_index, "
        "row_count, byte_count) VALUES (%s, %s, %s, %s, %s, %s)",
        (source, chunk[0], chunk[1], int(chunk[2]), rows, nbytes),
    )


# --- deferred-index marks --------------------------------------------------------------------


def deferred_marks_table(meta: str, task: str) -> str:
    return f"{quote_ident(meta)}.{quote_ident(task + '_loader_deferred_index')}"


async def ensure_deferred_marks(conn: asyncmy.Connection, meta: str, task: str) -> str:
    table = deferred_marks_table(meta, task)
    await conn.query(f"CREATE DATABASE IF NOT EXISTS {quote_ident(meta)}")
    await conn.query(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " source_name VARCHAR(255) NOT NULL, schema_name VARCHAR(255) NOT NULL,"
        " table_name VARCHAR(255) NOT NULL, index_defs MEDIUMTEXT NOT NULL,"
        " created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
        " PRIMARY KEY (source_name, schema_name, table_name)"
        ") DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    return table


async def read_deferred_marks(conn: asyncmy.Connection, table: str,
                              source: str) -> dict[TableKey, tuple[str, ...]]:
    rows = await fetchall(conn, f"SELECT schema_name, table_name, index_defs FROM {table} "
                                "WHERE source_name = %s", (source,))
    return {(as_text(r[0]), as_text(r[1])): tuple(json.loads(as_text(r[2]))) for r in rows}


async def mark_deferred(conn: asyncmy.Connection, table: str, source: str, key: TableKey,
                        indexes: Sequence[str]) -> None:
    await _exec(conn, f"REPLACE INTO {table} (source_name, schema_name, table_name, "
                      "index_defs) VALUES (%s, %s, %s, %s)",
                (source, *key, json.dumps(list(indexes))))


async def unmark_deferred(conn: asyncmy.Connection, table: str, source: str,
                          key: TableKey) -> None:
    await _exec(conn, f"DELETE FROM {table} WHERE source_name = %s AND schema_name = %s "
                      "AND table_name = %s", (source, *key))


async def drop_deferred_marks(target: upstream.ConnConfig, meta: str, task: str) -> None:
    """A delete without keep_meta drops the marks with the task's other meta tables.
    remove_meta keeps them: they say what the target tables lack, not how far the load
    got, and the tables stay; without its mark, a half-built table would look like the
    user's on the next start and never get its indexes."""
    async with upstream.open_conn(target) as conn:
        await conn.query(f"DROP TABLE IF EXISTS {deferred_marks_table(meta, task)}")


async def _exec(conn: asyncmy.Connection, sql: str, args: Sequence[Any]) -> None:
    async with conn.cursor() as cur:
        await cur.execute(sql, args)


# --- removal ---------------------------------------------------------------------------------


async def drop_task_meta(target: upstream.ConnConfig, meta: str, task: str,
                         source: str | None) -> None:
    """remove_meta (one source) or delete without keep_meta (the whole tables): the
    loader's chunk checkpoints, the syncer's position and schema tracker; on delete also
    the deferred-index marks (see drop_deferred_marks)."""
    table = loader_checkpoint_table(meta, task)
    async with upstream.open_conn(target) as conn, conn.cursor() as cur:
        if source is None:
            await cur.execute(f"DROP TABLE IF EXISTS {table}")
        else:
            await cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(meta)}")
            await cur.execute(f"SHOW TABLES FROM {quote_ident(meta)} LIKE %s",
                              (table.split(".", 1)[1].strip("`").replace("``", "`"),))
            if await cur.fetchone():
                await cur.execute(f"DELETE FROM {table} WHERE source_name = %s", (source,))
    if source is None:
        await drop_deferred_marks(target, meta, task)
    await sync_checkpoint.drop(target, meta, task, source)
