"""One subtask's incremental replication: binlog → schema tracker → routing and filters →
conflict-free lanes of batched statements → target, with checkpoints in the target.

Flow:
- a reader thread decodes the binlog (mysqlkit.binlog.reader) and hands lists of events to the
  event loop;
- the loop keeps the schema tracker current (DDL parsed with mysqlkit.schema.ddl), routes and
  filters each change, and assigns it to one of `repl_threads` lanes so that changes of
  the same row (by PK/UK values) keep their order (mysqlkit.sync.causality);
- each lane applies batches of `repl_batch` rows in one transaction together with its
  lane checkpoint row; DDL, conflicts across lanes and periodic flushes are barriers where
  every lane drains and the global checkpoint (position + schema tracker) is written.

Exactly once: the global checkpoint is only written when everything before it is applied.
After a crash the sync resumes from it and replays in safe mode (idempotent statements)
every transaction that may have been applied already, i.e. up to the largest lane
checkpoint (see mysqlkit.sync.checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errors import (
    BINLOG_NO_START,
    BINLOG_PURGED,
    SYNC_COLUMN_MISMATCH,
    DMError,
)
from mysqlkit import upstream
from mysqlkit.binlog.filter import BinlogFilter
from mysqlkit.binlog.reader import (
    BinlogReader,
    Commit,
    Heartbeat,
    QueryChange,
    RowsChange,
    Start,
    find_start_by_time,
)
from mysqlkit.position import BinlogPosition, master_position
from mysqlkit.relay.reader import relay_reader
from mysqlkit.retry import RetryClock, exhausted
from mysqlkit.routing import TableRouter
from mysqlkit.schema.ddl import Column
from mysqlkit.schema.tracker import SchemaTracker, TableSchema, load_table
from mysqlkit.sync import checkpoint
from mysqlkit.sync.causality import Causality, change_keys
from mysqlkit.sync.ddl_sync import DDLSync
from mysqlkit.sync.dml import ChangeKind, RowChange
from mysqlkit.sync.reader_bridge import CAUGHT_UP, ReaderBridge
from mysqlkit.sync.target_writer import TargetWriter

log = logging.getLogger("dmray.syncer")

FLUSH_EVERY_S = 1.0  # global checkpoint interval while events flow
STATUS_EVERY_S = 2.0  # how often the master's position is read for status


@dataclass
class SyncSpec:
    task: str
    source: str
    src: upstream.ConnConfig
    tgt: upstream.ConnConfig
    meta: str
    router: TableRouter
    bfilter: BinlogFilter
    server_id: int  # ours, as a replica of the source
    flavor: str = "mariadb"
    gtid_mode: bool = False
    repl_threads: int = 16
    repl_batch: int = 100
    safe_mode: bool = False
    safe_mode_seconds: float = 0.0
    start: BinlogPosition | None = None  # where to begin without a checkpoint
    start_time: float | None = None  # or: first event at/after this unix time
    exit_safe: BinlogPosition | None = None  # e.g. the dump's last snapshot position
    binlog_type: str = "remote"
    relay_dir: str = ""  # read the relay files here instead of the upstream
    # The task's shard_mode ("" = none): DDL of tables merged into one target table goes
    # through mysqlkit.sync.shard_ddl; the task's other sources' routers tell their shards.
    shard_mode: str = ""
    peer_routers: dict[str, TableRouter] = field(default_factory=dict)
    # A retryable error is retried this long (since it first failed), then pauses.
    retry_timeout: float = 300.0
    fault_dir: str = ""  # tests only: mysqlkit.faults crash points


@dataclass
class _Job:
    changes: list[RowChange]
    txn_start: BinlogPosition
    safe: bool
    # keyless tables in the batch → their last change in it (see mysqlkit.sync.checkpoint)
    tables: dict[tuple[str, str], checkpoint.ChangeId]


@dataclass
class _Stats:
    total_events: int = 0
    started: float = field(default_factory=time.monotonic)
    recent: list[tuple[float, int]] = field(default_factory=list)
    io_bytes: int = 0
    dump_io_bytes: int = 0
    master_binlog: str = ""
    master_gtid: str = ""
    master_pos: BinlogPosition | None = None
    last_ts: int = 0


class Syncer:
    def __init__(self, spec: SyncSpec) -> None:
        self.spec = spec
        self.tracker = SchemaTracker()
        self.tracker_dirty = False
        self.pos: BinlogPosition | None = None  # last transaction boundary consumed
        self.applied: BinlogPosition | None = None  # last global checkpoint written
        self.exit_safe: BinlogPosition | None = None
        self.safe_until = 0.0
        self.stats = _Stats()
        self.synced = False
        self.error: DMError | None = None
        self._lanes: list[asyncio.Queue[_Job | None]] = []
        self._lane_tasks: list[asyncio.Task[None]] = []
        self._pending: list[list[RowChange]] = []
        self._pending_safe: list[bool] = []
        self._pending_tables: list[dict[tuple[str, str], checkpoint.ChangeId]] = []
        # Keyless tables: the last change applied (from the checkpoint) and our place in
        # the current transaction (its changes' ordinal).
        self._table_done: dict[tuple[str, str], checkpoint.ChangeId] = {}
        self._ordinal = 0
        self._causality = Causality(max(1, spec.repl_threads), max(1, spec.repl_batch))
        self._txn_start: BinlogPosition | None = None
        self._last_flush = time.monotonic()
        self._ckpt_table = checkpoint.table_name(spec.meta, spec.task)
        self._lane_error: DMError | None = None
        self._schemas: dict[tuple[str, str], _TableMap] = {}
        self.target = TargetWriter(self)
        self.ddl = DDLSync(self)
        # A transient error being retried (DM format), shown in status while it lasts.
        self.retrying = ""
        self._relay_lacks_start = False
        self._read_at: BinlogPosition | None = None  # for dump_io_total_bytes

    # --- entry ----------------------------------------------------------------------
    async def run(self) -> None:
        """Replicate until cancelled; raises a DMError that must pause the subtask."""
        spec = self.spec
        await self._load_checkpoint()
        if spec.safe_mode_seconds > 0:
            self.safe_until = time.monotonic() + spec.safe_mode_seconds
        n = max(1, spec.repl_threads)
        self._pending = [[] for _ in range(n)]
        self._pending_safe = [False] * n
        self._pending_tables = [{} for _ in range(n)]
        self._lanes = [asyncio.Queue(maxsize=4) for _ in range(n)]
        self._lane_tasks = [asyncio.create_task(self.target.lane(i)) for i in range(n)]
        status_task = asyncio.create_task(self._poll_master())
        try:
            retry = RetryClock(spec.retry_timeout)
            while True:
                pos_before = self.pos
                try:
                    await self._stream()
                    return
                except DMError as err:
                    if err.error_code is BINLOG_PURGED and spec.relay_dir and \
                            not self._relay_lacks_start:
                        # The relay files start after our checkpoint (the relay was enabled
                        # later): read the upstream instead, with the same results.
                        log.warning("sync %s/%s: the relay log lacks %s; reading the source",
                                    spec.task, spec.source, self.pos)
                        self._relay_lacks_start = True
                        await self._barrier()
                        if self._txn_start is not None:
                            self.exit_safe = checkpoint.later(self.exit_safe, self._txn_start)
                        continue
                    if self.pos != pos_before:
                        retry.reset()  # it read on for a while: a new failure
                    delay = retry.next_delay() if err.retryable else None
                    if delay is None:
                        raise exhausted(err) from None
                    # The reader lost its connection: resume reading at the last
                    # transaction boundary; the half-read transaction replays in safe mode.
                    await self._barrier()
                    if self._txn_start is not None:
                        self.exit_safe = checkpoint.later(self.exit_safe, self._txn_start)
                    self.retrying = str(err)
                    log.warning("sync %s/%s: %s; retrying in %.1fs", spec.task, spec.source,
                                err.message, delay)
                    await asyncio.sleep(delay)
        finally:
            status_task.cancel()
            for t in self._lane_tasks:
                t.cancel()
            for t in [*self._lane_tasks, status_task]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            self.target.close()

    async def _load_checkpoint(self) -> None:
        spec = self.spec
        cp = await checkpoint.load(spec.tgt, spec.meta, spec.task, spec.source)
        if cp is not None:
            self.pos = self.applied = cp.position
            self.exit_safe = cp.exit_safe
            self._table_done = dict(cp.tables)
            if cp.tracker is not None:
                self.tracker = SchemaTracker.from_dict(cp.tracker)
            return
        start = spec.start
        if start is None and spec.start_time is not None:
            start = await asyncio.to_thread(find_start_by_time, spec.src,
                                            int(spec.start_time), server_id=spec.server_id,
                                            flavor=spec.flavor)
        if start is None:
            raise BINLOG_NO_START("no checkpoint, no binlog position in source_conf and no "
                                  "start_time")
        self.pos = start
        self.exit_safe = spec.exit_safe
        await self._init_tracker()
        # Record where we start, so a crash before the first flush resumes from here.
        await checkpoint.save(spec.tgt, spec.meta, spec.task, spec.source, start,
                              self.exit_safe, self.tracker.to_dict())
        self.applied = start
        self.tracker_dirty = False

    async def _init_tracker(self) -> None:
        """Structures of the migrated tables as of the start position. The target's copy
        is the best witness (a full migration, ours or the user's, created it from the
        snapshot at that position); a table missing there is taken from the upstream as
        it is now, as DM does."""
        pairs = await _selected_tables(self.spec.src, self.spec.router)
        for schema, table in pairs:
            await self._structure(schema, table)

    async def _structure(self, schema: str, table: str) -> TableSchema | None:
        dest = self.spec.router.route(schema, table)
        sql = None
        if dest is not None:
            with contextlib.suppress(DMError):
                async with upstream.open_conn(self.spec.tgt) as conn:
                    sql = await load_table(conn, dest.schema, dest.table)
        if sql is None:
            try:
                async with upstream.open_conn(self.spec.src) as conn:
                    sql = await load_table(conn, schema, table)
            except DMError:
                return None
        self.tracker_dirty = True
        return self.tracker.set_table(schema, table, sql)

    # --- reading --------------------------------------------------------------------
    async def _stream(self) -> None:
        spec = self.spec
        assert self.pos is not None
        start = Start.at(self.pos)
        self._read_at = self.pos
        if spec.relay_dir and not self._relay_lacks_start:
            reader = relay_reader(Path(spec.relay_dir), start, flavor=spec.flavor,
                                  gtid_mode=spec.gtid_mode, want_table=self._wants,
                                  unsigned_of=self._unsigned_of)
        else:
            reader = BinlogReader(spec.src, spec.server_id, start, flavor=spec.flavor,
                                  gtid_mode=spec.gtid_mode, want_table=self._wants,
                                  unsigned_of=self._unsigned_of)
        bridge = ReaderBridge(reader, f"binlog-{spec.task}-{spec.source}")
        try:
            while True:
                item = await bridge.get()
                if item is None:
                    await self._flush()
                    return
                for ev in item:
                    if ev is CAUGHT_UP:
                        # Lanes with nothing queued gain nothing by waiting for a full
                        # batch; busy ones keep batching (throughput).
                        for lane, q in enumerate(self._lanes):
                            if q.empty():
                                await self._dispatch(lane)
                        continue
                    await self._event(ev)
                    if isinstance(ev, QueryChange):
                        bridge.ddl_applied()
                if self._lane_error is not None:
                    raise self._lane_error
                if time.monotonic() - self._last_flush > FLUSH_EVERY_S:
                    await self._flush()
        finally:
            await bridge.close()

    def _wants(self, schema: str, table: str) -> bool:
        return self.spec.router.selects(schema, table)

    def _unsigned_of(self, schema: str, table: str) -> list[bool] | None:
        ts = self.tracker.get(schema, table)
        return None if ts is None else [c.unsigned for c in ts.columns]

    def _count_read(self, p: BinlogPosition) -> None:
        """dump_io_total_bytes: the binlog read from the upstream, by how far it moved."""
        last = self._read_at
        if last is None or last.binlog_name != p.binlog_name:
            self.stats.dump_io_bytes += max(0, p.binlog_pos - 4) if last else 0
        elif p.binlog_pos > last.binlog_pos:
            self.stats.dump_io_bytes += p.binlog_pos - last.binlog_pos
        self._read_at = p

    async def _event(self, ev: Any) -> None:
        if isinstance(ev, RowsChange):
            await self._rows(ev)
        elif isinstance(ev, Commit):
            self._count_read(ev.pos)
            self.pos = ev.pos
            self._txn_start = None
            self._ordinal = 0
            self.stats.last_ts = ev.timestamp
        elif isinstance(ev, QueryChange):
            self._count_read(ev.pos)
            await self.ddl.query(ev)
        elif isinstance(ev, Heartbeat):
            self._count_read(ev.pos)
            await self._dispatch_all()
            await self._drain()
            self.synced = self._caught_up()
            if time.monotonic() - self._last_flush > FLUSH_EVERY_S / 4:
                await self._flush()

    def _caught_up(self) -> bool:
        """At the source's end: same GTID set when both are known (the source's position
        also counts trailing events that end no transaction, such as MariaDB's binlog
        checkpoint events), else at or past its position."""
        mp, pos = self.stats.master_pos, self.pos
        if mp is None or pos is None:
            return True
        if mp.gtid and pos.gtid and mp.gtid == pos.gtid:
            return True
        return checkpoint.pos_key(pos) >= checkpoint.pos_key(mp)

    # --- rows -----------------------------------------------------------------------
    async def _table(self, schema: str, table: str) -> _TableMap | None:
        ts = self.tracker.get(schema, table)
        if ts is None:
            # A table the tracker has not seen (e.g. created before the start position).
            ts = await self._structure(schema, table)
            if ts is None:
                return None
        key = (schema, table)
        tm = self._schemas.get(key)
        if tm is None or tm.schema is not ts:
            target = self.spec.router.route(schema, table)
            if target is None:
                return None
            tm = _TableMap.build(ts, target.schema, target.table)
            self._schemas[key] = tm
        return tm

    async def _rows(self, ev: RowsChange) -> None:
        if self._txn_start is None:
            self._txn_start = self.pos
        self.stats.last_ts = ev.timestamp
        first = self._ordinal
        self._ordinal += _count(ev)
        if self.spec.bfilter.skip_dml(ev.schema, ev.table, ev.kind):
            self.stats.total_events += _count(ev)
            return
        tm = await self._table(ev.schema, ev.table)
        if tm is None:
            return
        if ev.column_count != len(tm.schema.columns):
            raise SYNC_COLUMN_MISMATCH(len(tm.schema.columns), ev.column_count,
                                       f"`{ev.schema}`.`{ev.table}`")
        changes: list[RowChange]
        if ev.kind == "update":
            changes = [tm.change("update", b, a) for b, a in ev.updates]
        elif ev.kind == "insert":
            changes = [tm.change("insert", None, r) for r in ev.rows]
        else:
            changes = [tm.change("delete", r, None) for r in ev.rows]
        self.stats.total_events += len(changes)
        batch = max(1, self.spec.repl_batch)
        safe = self._safe()
        txn_start = self._txn_start or self.pos
        assert txn_start is not None
        table_key = (ev.schema, ev.table)
        done = None if tm.exact else self._table_done.get(table_key)
        for i, ch in enumerate(changes):
            if tm.exact:
                keys = tm.keys(ch)
            else:
                change_id = (txn_start.binlog_name, txn_start.binlog_pos, first + i + 1)
                if done is not None and change_id <= done:
                    continue  # applied before the restart: a replay would add it twice
                # One lane at a time for the table, in binlog order (see checkpoint).
                keys = [f"{ev.schema}.{ev.table}:*"]
            lane = self._causality.assign(ch, keys)
            if lane is None:
                await self._barrier()
                lane = self._causality.assign(ch, keys)
                assert lane is not None
            pending = self._pending[lane]
            pending.append(ch)
            # A batch may span transactions on both sides of the safe-mode exit point:
            # it is safe if any of its changes must be.
            self._pending_safe[lane] |= safe
            if not tm.exact:
                self._pending_tables[lane][table_key] = change_id
            if len(pending) >= batch:
                await self._dispatch(lane)

    def _safe(self) -> bool:
        if self.spec.safe_mode or time.monotonic() < self.safe_until:
            return True
        es = self.exit_safe
        start = self._txn_start or self.pos
        return es is not None and start is not None and \
            checkpoint.pos_key(start) <= checkpoint.pos_key(es)

    async def _dispatch(self, lane: int) -> None:
        pending = self._pending[lane]
        if not pending:
            return
        self._pending[lane] = []
        safe, self._pending_safe[lane] = self._pending_safe[lane] or self._safe(), False
        tables, self._pending_tables[lane] = self._pending_tables[lane], {}
        txn_start = self._txn_start or self.pos
        assert txn_start is not None
        await self._lanes[lane].put(_Job(pending, txn_start, safe, tables))

    async def _dispatch_all(self) -> None:
        for lane in range(len(self._pending)):
            await self._dispatch(lane)

    async def _drain(self) -> None:
        await asyncio.gather(*(q.join() for q in self._lanes))
        if self._lane_error is not None:
            raise self._lane_error

    async def _barrier(self) -> None:
        await self._dispatch_all()
        await self._drain()
        self._causality.reset()

    async def _flush(self) -> None:
        """Barrier + global checkpoint at the last transaction boundary. Mid-transaction
        the checkpoint stays at the boundary before it (its rows replay in safe mode)."""
        await self._barrier()
        self._last_flush = time.monotonic()
        if self._txn_start is not None:
            # Part of a transaction is applied: a resume replays it, so it must be safe.
            self.exit_safe = checkpoint.later(self.exit_safe, self._txn_start)
        pos = self.pos
        if pos is None or (pos == self.applied and not self.tracker_dirty):
            return
        es = self.exit_safe
        if es is not None and checkpoint.pos_key(es) < checkpoint.pos_key(pos):
            es = None
        tracker = self.tracker.to_dict() if self.tracker_dirty else None
        await self.target.exec_retrying(checkpoint.save_sql(self._ckpt_table, self.spec.source, pos,
                                                      es, tracker))
        self.applied = pos
        self.tracker_dirty = False


    # --- status ---------------------------------------------------------------------
    async def _poll_master(self) -> None:
        while True:
            with contextlib.suppress(DMError, OSError):
                self.stats.master_pos = await master_position(self.spec.src)
                self.synced = self.synced and self._caught_up()
            await asyncio.sleep(STATUS_EVERY_S)

    def status(self) -> dict[str, Any]:
        st = self.stats
        now = time.monotonic()
        elapsed = max(now - st.started, 1e-3)
        st.recent.append((now, st.total_events))
        st.recent = [(t, n) for t, n in st.recent if now - t <= 10.0] or [(now, 0)]
        t0, n0 = st.recent[0]
        recent = int((st.total_events - n0) / (now - t0)) if now - t0 > 0.5 else 0
        mp = st.master_pos
        pos = self.pos
        if pos is not None and (mp is None or checkpoint.pos_key(pos) > checkpoint.pos_key(mp)):
            mp = pos  # the master was read before our last event: it is at least there
        synced = self.synced and not any(self._pending)
        behind = 0 if synced or not st.last_ts else max(0, int(time.time() - st.last_ts))
        return {
            "total_events": st.total_events,
            "total_tps": int(st.total_events / elapsed),
            "recent_tps": recent,
            "master_binlog": _fmt(mp),
            "master_binlog_gtid": mp.gtid if mp else "",
            "syncer_binlog": _fmt(pos),
            "syncer_binlog_gtid": pos.gtid if pos else "",
            "blocking_ddls": [],
            "unresolved_groups": [],
            "synced": synced,
            "binlog_type": "remote" if self._relay_lacks_start else self.spec.binlog_type,
            "seconds_behind_master": behind,
            "io_total_bytes": st.io_bytes,
            "dump_io_total_bytes": st.dump_io_bytes,
        }


@dataclass
class _TableMap:
    """How one tracked table's row images become RowChanges (rebuilt after its DDL)."""
    schema: TableSchema
    target_schema: str
    target_table: str
    columns: tuple[str, ...]
    skip: frozenset[int]
    key: tuple[int, ...]
    unique_keys: tuple[tuple[int, ...], ...]  # the other unique keys, for causality
    # A key of NOT NULL columns identifies every row: safe mode makes replays idempotent.
    exact: bool
    # The key holds text that a case- or accent-insensitive collation may compare equal
    # under another spelling: causality keys are folded.
    fold: bool
    # Causality keys the fast way: one key column, no folding, no other unique key.
    simple_key: int | None
    merge_updates: bool
    prefix: str  # of causality keys

    @staticmethod
    def build(ts: TableSchema, target_schema: str, target_table: str) -> _TableMap:
        names = tuple(c.name for c in ts.columns)
        skip = frozenset(i for i, c in enumerate(ts.columns) if c.generated)
        key_names = ts.key_columns()
        key = tuple(names.index(k) for k in key_names)
        uks = tuple(tuple(names.index(c) for c in uk) for uk in ts.unique_keys
                    if tuple(uk) != tuple(key_names))
        exact = bool(key_names) and all(
            (c := ts.column(k)) is not None and not c.nullable for k in key_names)
        fold = any(_folds(ts.columns[i]) for i in key)
        plain = exact and not fold and not uks
        return _TableMap(ts, target_schema, target_table, names, skip, key, uks, exact, fold,
                         key[0] if plain and len(key) == 1 else None, plain,
                         f"{target_schema}.{target_table}:")

    def change(self, kind: ChangeKind, before: tuple[str, ...] | None,
               after: tuple[str, ...] | None) -> RowChange:
        return RowChange(kind, self.target_schema, self.target_table, self.columns, self.skip,
                         self.key, before, after, self.merge_updates)

    def keys(self, ch: RowChange) -> list[str]:
        """The change's causality keys (see causality.change_keys)."""
        k = self.simple_key
        if k is None:
            return change_keys(ch, fold=self.fold, unique_keys=self.unique_keys)
        b, a = ch.before, ch.after
        if b is None:
            return [self.prefix + a[k]]  # type: ignore[index]
        if a is None or a[k] == b[k]:
            return [self.prefix + b[k]]
        return [self.prefix + b[k], self.prefix + a[k]]


def _folds(col: Column) -> bool:
    """Whether equal values of this column may differ in text (a non-binary collation of
    a text type). ENUM and SET arrive as numbers; unknown collations count as folding."""
    if col.data_type not in _TEXT_TYPES or col.charset == "binary":
        return False
    m = _COLLATE_RE.search(col.definition)
    return not (m and m.group(1).lower().endswith("_bin"))


_TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
_COLLATE_RE = re.compile(r"\bCOLLATE\s+`?(\w+)", re.IGNORECASE)


async def _selected_tables(cfg: upstream.ConnConfig,
                           router: TableRouter) -> list[tuple[str, str]]:
    from mysqlkit.routing import migrate_targets
    return [(s.schema, s.table) for s, _t in await migrate_targets(cfg, router)]


def _count(ev: RowsChange) -> int:
    return len(ev.updates) if ev.kind == "update" else len(ev.rows)


def _fmt(p: BinlogPosition | None) -> str:
    return f"({p.binlog_name}, {p.binlog_pos})" if p is not None and p.binlog_name else ""


