"""A subtask's deferred secondary indexes on the target (mysqlkit.full.deferred_index says which
ones and why): the tables it creates without them, and the ALTERs that add them back.

Crash-safe by a mark in the meta schema (mysqlkit.meta), `<task>_loader_deferred_index`, one row
per (source, target table) holding the deferred definitions. It is written BEFORE the
table is created without them, so an existing table without a mark is never ours (a
table the user created is never altered), and a marked one is ours even though it
exists on a restart. The ALTER runs once all chunks routed to the table are loaded,
while other tables load; it adds only the indexes still missing, then drops the mark.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import asyncmy

from mysqlkit import upstream
from mysqlkit.full.deferred_index import DeferredSplit, referenced_tables, split_create
from mysqlkit.full.load import add_missing_indexes, create_target_table, table_exists
from mysqlkit.meta import (
    ChunkKey,
    TableKey,
    deferred_marks_table,
    ensure_deferred_marks,
    mark_deferred,
    read_deferred_marks,
    unmark_deferred,
)
from mysqlkit.sqlquote import quote_ident
from mysqlkit.upstream import fetchall

log = logging.getLogger("dmray.runner")



class TargetTable(NamedTuple):
    source_table: str
    create_sql: str  # the source's SHOW CREATE TABLE (or a dump's schema file)
    schema: str  # routed target
    table: str


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
        mtable = await ensure_deferred_marks(conn, meta, task)
        marks = await read_deferred_marks(conn, mtable, source)
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
                await mark_deferred(conn, mtable, source, key, split.indexes)
                marks[key] = pending[key] = split.indexes
                await create_target_table(conn, split.create_sql, *key)
            else:
                if key in marks:  # stale: the table is created whole now
                    await unmark_deferred(conn, mtable, source, key)
                    del marks[key]
                await create_target_table(conn, t.create_sql, *key)
    return pending


async def _referenced_on_target(conn: asyncmy.Connection, schema: str, table: str) -> bool:
    """A table already in the target (the user's) has a foreign key to this one."""
    return bool(await fetchall(
        conn, "SELECT 1 FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE "
              "UNIQUE_CONSTRAINT_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s LIMIT 1",
        (schema, table)))


class IndexBuilder:
    """The ALTERs of one subtask's pending tables: each starts once the chunks routed to
    its table are all loaded (update), at most `limit` at a time; finish() waits for all.
    A failed ALTER is raised by check(), which the loading lanes call after each chunk,
    and by finish()."""

    def __init__(self, target: upstream.ConnConfig, meta: str, task: str, source: str,
                 pending: dict[TableKey, tuple[str, ...]], plan: Iterable[dict[str, Any]],
                 limit: int):
        self.target, self.source = target, source
        self.mtable = deferred_marks_table(meta, task)
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
                    await unmark_deferred(conn, self.mtable, self.source, key)
            log.info("%s.%s: added the deferred indexes %s", *key, added)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # kept for check()/finish(): pauses the subtask
            if self.error is None:
                self.error = exc
