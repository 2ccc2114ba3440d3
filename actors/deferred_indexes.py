"""A subtask's deferred secondary indexes on the target (mysqlkit.deferred_index says which
ones and why): the tables it creates without them, and the ALTERs that add them back.

Crash-safe by a mark in the meta schema, `<meta>.<task>_loader_deferred_index`, one row
per (source, target table) holding the deferred definitions. It is written BEFORE the
table is created without them, so an existing table without a mark is never ours (a
table the user created is never altered), and a marked one is ours even though it
exists on a restart. The ALTER runs once all chunks routed to the table are loaded,
while other tables load; it adds only the indexes still missing, then drops the mark.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import asyncmy

from mysqlkit import upstream
from mysqlkit.deferred_index import DeferredSplit, referenced_tables, split_create
from mysqlkit.load import add_missing_indexes, create_target_table, table_exists
from mysqlkit.sqlquote import quote_ident
from mysqlkit.upstream import as_text, fetchall

log = logging.getLogger("dmray.runner")

TableKey = tuple[str, str]  # target (schema, table)
ChunkKey = tuple[str, str, int]  # source (schema, table, chunk index), as the checkpoints


class TargetTable(NamedTuple):
    source_table: str
    create_sql: str  # the source's SHOW CREATE TABLE (or a dump's schema file)
    schema: str  # routed target
    table: str


def marks_table(meta: str, task: str) -> str:
    return f"{quote_ident(meta)}.{quote_ident(task + '_loader_deferred_index')}"


async def _ensure_marks(conn: asyncmy.Connection, meta: str, task: str) -> str:
    table = marks_table(meta, task)
    await conn.query(f"CREATE DATABASE IF NOT EXISTS {quote_ident(meta)}")
    await conn.query(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " source_name VARCHAR(255) NOT NULL, schema_name VARCHAR(255) NOT NULL,"
        " table_name VARCHAR(255) NOT NULL, index_defs MEDIUMTEXT NOT NULL,"
        " created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
        " PRIMARY KEY (source_name, schema_name, table_name)"
        ") DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    return table


async def drop_marks(target: upstream.ConnConfig, meta: str, task: str) -> None:
    """A delete without keep_meta drops the marks with the task's other meta tables.
    remove_meta keeps them: they say what the target tables lack, not how far the load
    got, and the tables stay; without its mark, a half-built table would look like the
    user's on the next start and never get its indexes."""
    async with upstream.open_conn(target) as conn:
        await conn.query(f"DROP TABLE IF EXISTS {marks_table(meta, task)}")


async def create_schemas(target: upstream.ConnConfig, schemas: Sequence[str]) -> None:
    """The target schemas of the migrated source schemas, those without tables too."""
    if not schemas:
        return
    async with upstream.open_conn(target) as conn:
        for schema in schemas:
            await conn.query(f"CREATE DATABASE IF NOT EXISTS {quote_ident(schema)}")


async def create_tables(target: upstream.ConnConfig, meta: str, task: str, source: str,
                        tables: Sequence[TargetTable]) -> dict[TableKey, tuple[str, ...]]:
    """Create the target tables (as create_target_table; several source tables may route
    to one), those created here without their deferrable indexes. Returns the indexes
    to add per target table: created now, or marked by an earlier run of the subtask."""
    # A parent's plain KEY may be what a foreign key of another table needs: kept.
    referenced = set().union(*(referenced_tables(t.create_sql) for t in tables))
    pending: dict[TableKey, tuple[str, ...]] = {}
    async with upstream.open_conn(target) as conn:
        mtable = await _ensure_marks(conn, meta, task)
        rows = await fetchall(conn, f"SELECT schema_name, table_name, index_defs FROM {mtable} "
                                    "WHERE source_name = %s", (source,))
        marks = {(as_text(r[0]), as_text(r[1])): tuple(json.loads(as_text(r[2]))) for r in rows}
        for t in tables:
            key = (t.schema, t.table)
            split = (DeferredSplit(t.create_sql) if t.source_table.lower() in referenced
                     else split_create(t.create_sql))
            if await table_exists(conn, *key):
                await create_target_table(conn, t.create_sql, *key)  # checks its columns
                if key in marks:
                    pending[key] = marks[key]
            elif split.indexes and not await _referenced_on_target(conn, *key):
                # Marked before it is created without them: see the module's docstring.
                await _exec(conn, f"REPLACE INTO {mtable} (source_name, schema_name, "
                                  "table_name, index_defs) VALUES (%s, %s, %s, %s)",
                            (source, *key, json.dumps(split.indexes)))
                marks[key] = pending[key] = split.indexes
                await create_target_table(conn, split.create_sql, *key)
            else:
                if key in marks:  # stale: the table is created whole now
                    await _unmark(conn, mtable, source, key)
                    del marks[key]
                await create_target_table(conn, t.create_sql, *key)
    return pending


async def _referenced_on_target(conn: asyncmy.Connection, schema: str, table: str) -> bool:
    """A table already in the target (the user's) has a foreign key to this one."""
    return bool(await fetchall(
        conn, "SELECT 1 FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE "
              "UNIQUE_CONSTRAINT_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s LIMIT 1",
        (schema, table)))


async def _unmark(conn: asyncmy.Connection, mtable: str, source: str, key: TableKey) -> None:
    await _exec(conn, f"DELETE FROM {mtable} WHERE source_name = %s AND schema_name = %s "
                      "AND table_name = %s", (source, *key))


async def _exec(conn: asyncmy.Connection, sql: str, args: Sequence[Any]) -> None:
    async with conn.cursor() as cur:
        await cur.execute(sql, args)


class IndexBuilder:
    """The ALTERs of one subtask's pending tables: each starts once the chunks routed to
    its table are all loaded (update), at most `limit` at a time; finish() waits for all.
    A failed ALTER is raised by check(), which the loading lanes call after each chunk,
    and by finish()."""

    def __init__(self, target: upstream.ConnConfig, meta: str, task: str, source: str,
                 pending: dict[TableKey, tuple[str, ...]], plan: Iterable[dict[str, Any]],
                 limit: int):
        self.target, self.source = target, source
        self.mtable = marks_table(meta, task)
        self.pending = dict(pending)
        self._left: dict[TableKey, set[ChunkKey]] = {key: set() for key in pending}
        self._table_of: dict[ChunkKey, TableKey] = {}
        for c in plan:
            key = (c["target_schema"], c["target_table"])
            if key in self._left:
                ck = (c["schema"], c["table"], int(c["index"]))
                self._left[key].add(ck)
                self._table_of[ck] = key
        self._sem = asyncio.Semaphore(max(1, limit))
        self._tasks: dict[TableKey, asyncio.Task[None]] = {}
        self._first = True
        self.error: BaseException | None = None

    def update(self, done: Iterable[ChunkKey]) -> None:
        """Chunks now loaded: start the ALTER of each table left with none to load (the
        first call looks at every table: some may have no chunk at all)."""
        touched = set(self._left) if self._first else set()
        self._first = False
        for ck in done:
            key = self._table_of.get(ck)
            if key is not None:
                self._left[key].discard(ck)
                touched.add(key)
        for key in touched:
            if not self._left[key] and key not in self._tasks:
                self._tasks[key] = asyncio.get_running_loop().create_task(self._add(key))

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    async def finish(self) -> None:
        """Every chunk is loaded: start what is left, wait for all ALTERs."""
        for left in self._left.values():
            left.clear()
        self._first = True
        self.update(())
        await asyncio.gather(*self._tasks.values())
        self.check()

    def cancel(self) -> None:
        for t in self._tasks.values():
            t.cancel()

    async def _add(self, key: TableKey) -> None:
        try:
            async with self._sem:
                added = await add_missing_indexes(self.target, *key, self.pending[key])
                async with upstream.open_conn(self.target) as conn:
                    await _unmark(conn, self.mtable, self.source, key)
            log.info("%s.%s: added the deferred indexes %s", *key, added)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # kept for check()/finish(): pauses the subtask
            if self.error is None:
                self.error = exc
