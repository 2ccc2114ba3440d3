"""DDL in the binlog stream: checkpointed before it runs, tracked even when filtered out,
routed, and for sharded tasks coordinated through the shard DDL lock and the merged
table's structure (mysqlkit.sync.shard_ddl decides what runs)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import TYPE_CHECKING

import orjson

from errors import (
    SYNC_EXEC,
    DMError,
)
from mysqlkit import upstream
from mysqlkit.binlog.reader import (
    QueryChange,
)
from mysqlkit.faults import crash_point
from mysqlkit.routing import TableRouter
from mysqlkit.schema.ddl import DDL, parse_ddl
from mysqlkit.schema.tracker import SchemaTracker, TableSchema
from mysqlkit.sqlquote import quote_ident
from mysqlkit.sync import checkpoint, shard_ddl

if TYPE_CHECKING:
    from mysqlkit.sync.syncer import Syncer

log = logging.getLogger("dmray.syncer")

# DDL errors that only mean "already done": replaying a DDL that was applied just before a
# crash, before its checkpoint was written.
_DDL_ALREADY_DONE = frozenset({1007, 1008, 1050, 1051, 1054, 1060, 1061, 1091, 1146})
# In a shard merge, CREATE DATABASE/TABLE of what another shard created already.
_SHARD_ALREADY_DONE = frozenset({1007, 1050})
SHARD_LOCK_WAIT_S = 300


class DDLSync:
    """The DDL handling of one Syncer."""

    def __init__(self, syncer: Syncer) -> None:
        self.s = syncer

    # --- DDL ------------------------------------------------------------------------
    async def query(self, ev: QueryChange) -> None:
        ddls = parse_ddl(ev.sql, ev.schema)
        if not ddls:
            return
        # The checkpoint goes to the DDL's start, with the structures before it, before
        # the DDL runs: a crash after the DDL then replays only the DDL itself (its
        # "already done" errors tolerated), never rows from before it against the new
        # structure. A resume from there is a replay up to the DDL's end (exit_safe): its
        # DDL may find its work done (_DDL_ALREADY_DONE).
        await self.s._barrier()
        replaying = self.s._safe()
        self.s.exit_safe = checkpoint.later(self.s.exit_safe, ev.pos)
        await self.s._flush()
        crash_point(self.s.spec.fault_dir, "syncer.ddl.before")
        shard = bool(self.s.spec.shard_mode)
        if shard:  # one shard DDL of the task at a time, its tracker saved with it
            await self._shard_lock(True)
        try:
            for ddl in ddls:
                await self._apply_ddl(ddl, replaying)
            crash_point(self.s.spec.fault_dir, "syncer.ddl.after_exec")
            self.s.pos = ev.pos
            self.s._txn_start = None
            self.s._ordinal = 0
            self.s.tracker_dirty = True
            await self.s._flush()
            crash_point(self.s.spec.fault_dir, "syncer.ddl.after_checkpoint")
        finally:
            if shard:
                await self._shard_lock(False)

    async def _apply_ddl(self, ddl: DDL, replaying: bool) -> None:
        spec = self.s.spec
        wanted = self._ddl_wanted(ddl)
        # Tracked even when filtered out: later row events carry the new structure.
        self.s.tracker.apply(ddl)
        self.s._schemas.clear()
        if not wanted or spec.bfilter.skip_ddl(ddl.schema, ddl.table, ddl.event_type, ddl.sql):
            return
        sql = ddl.routed(self._route_any)
        if sql is None:
            return
        if spec.shard_mode:
            sql = await self._shard_sql(ddl)
            if sql is None:
                return
        try:
            await self.s.target.exec_retrying((sql, ()))
        except DMError as err:
            code = upstream.dm_errno(err)
            if spec.shard_mode and code in _SHARD_ALREADY_DONE:
                log.info("sync %s/%s: another shard created it already: %s",
                         spec.task, spec.source, sql)
                return
            if replaying and code in _DDL_ALREADY_DONE:
                log.info("sync %s/%s: DDL already applied before the restart: %s",
                         spec.task, spec.source, sql)
                return
            raise

    # --- shard merge DDL (spec.shard_mode) -------------------------------------------------
    async def _shard_lock(self, take: bool) -> None:
        """A named lock on the target that serializes the shard DDLs of the task's subtasks:
        each decides from the others' saved trackers, so a decision, its DDL and the
        tracker it leaves are one step."""
        name = "dmray-shard-" + hashlib.sha1(self.s.spec.task.encode()).hexdigest()[:40]
        if not take:
            with contextlib.suppress(DMError):
                await self.s.target.exec_retrying(("DO RELEASE_LOCK(%s)", (name,)))
            return
        [(got,)] = await self.s.target.exec_retrying(("SELECT GET_LOCK(%s, %s)",
                                              (name, SHARD_LOCK_WAIT_S)))
        if got != 1:
            raise SYNC_EXEC(f"no shard DDL lock after {SHARD_LOCK_WAIT_S} s: another "
                            f"subtask of task {self.s.spec.task} holds it")

    async def _shard_sql(self, ddl: DDL) -> str | None:
        """What a shard's DDL runs on the merged table (mysqlkit.sync.shard_ddl); None: nothing."""
        dest = self._route_any(ddl.schema, ddl.table) if ddl.table else None
        target: TableSchema | None = None
        peers: list[TableSchema] | None = []
        if dest is not None:
            target = await self._target_structure(*dest)
            peers = await self._shard_peers(ddl, dest)
        decision = shard_ddl.decide(ddl, target, peers)
        for why in decision.skipped:
            log.info("sync %s/%s: shard DDL %r: %s", self.s.spec.task, self.s.spec.source,
                     ddl.sql[:200], why)
        return None if decision.ddl is None else decision.ddl.routed(self._route_any)

    async def _target_structure(self, schema: str, table: str) -> TableSchema | None:
        try:
            rows = await self.s.target.exec_retrying(
                (f"SHOW CREATE TABLE {quote_ident(schema)}.{quote_ident(table)}", ()))
        except DMError as err:
            if upstream.dm_errno(err) in (1049, 1146):
                return None
            raise
        return SchemaTracker().set_table(schema, table, upstream.as_text(rows[0][1]))

    async def _shard_peers(self, ddl: DDL, dest: tuple[str, str]) -> list[TableSchema] | None:
        """The current structures of the group's other shards: ours from the tracker, the
        other sources' from the trackers they saved with their checkpoints. None while a
        source of the task has saved none (its shards are not known)."""
        own = {(ddl.schema, ddl.table), (ddl.new_schema or ddl.schema, ddl.new_table)}
        out = [ts for ts in _routed_to(self.s.tracker, self.s.spec.router, dest)
               if (ts.schema, ts.table) not in own]
        if not self.s.spec.peer_routers:
            return out
        rows = await self.s.target.exec_retrying(
            (f"SELECT id, table_info FROM {self.s._ckpt_table} "
             f"WHERE is_global = 1 AND cp_schema = '' AND id <> %s", (self.s.spec.source,)))
        known = set()
        for sid, info in rows:
            router = self.s.spec.peer_routers.get(upstream.as_text(sid))
            if router is None or not info:
                continue
            known.add(upstream.as_text(sid))
            out += _routed_to(SchemaTracker.from_dict(orjson.loads(info)), router, dest)
        return out if known == set(self.s.spec.peer_routers) else None

    def _ddl_wanted(self, ddl: DDL) -> bool:
        if not ddl.table:
            return self.s.spec.router.route_schema(ddl.schema) is not None
        return self.s.spec.router.selects(ddl.schema, ddl.table) or bool(
            getattr(ddl, "new_table", "") and self.s.spec.router.selects(
                getattr(ddl, "new_schema", "") or ddl.schema, ddl.new_table))

    def _route_any(self, schema: str, table: str) -> tuple[str, str] | None:
        if not table:
            s = self.s.spec.router.route_schema(schema)
            return None if s is None else (s, "")
        ref = self.s.spec.router.route(schema, table)
        return None if ref is None else (ref.schema, ref.table)


def _routed_to(tracker: SchemaTracker, router: TableRouter,
               dest: tuple[str, str]) -> list[TableSchema]:
    """The tables of `tracker` that `router` sends to `dest`."""
    out = []
    for schema in tracker.list_schemas():
        for table in tracker.list_tables(schema):
            ref = router.route(schema, table)
            ts = tracker.get(schema, table)
            if ref is not None and ts is not None and (ref.schema, ref.table) == dest:
                out.append(ts)
    return out
