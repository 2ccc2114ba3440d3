"""Running one subtask's full migration: plan chunks, open one consistent snapshot across
chunk-worker processes, and let them dump and load chunk by chunk (pipelined: a chunk is
loaded as soon as it is read, no files in between unless the mode asks for them).

Resumable: a chunk's completion is a row in the target's meta schema, written in the same
transaction as the chunk's rows, and the chunk plan is an event, so a restarted runner
redoes exactly the chunks that are not done and never writes a row twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Container
from pathlib import Path
from typing import Any, Protocol

import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.chunk_worker import ChunkWorker
from actors.config import RuntimeConfig
from actors.deferred_indexes import (
    IndexBuilder,
    TargetTable,
    create_schemas,
    create_tables,
)
from actors.remote import COORDINATOR, get_actor, worker_actor_name
from actors.sync_worker import SyncWorker, build_spec, replica_server_id
from domain.task import TaskState
from domain.task_models import Task
from errors import API_ERROR, LOAD_DUMP_DIR_NOT_FOUND, DMError, scrub
from events.base import DomainEvent
from events.task import DumpPlanned, DumpSnapshotTaken, SubtaskProgress
from mysqlkit import upstream
from mysqlkit.binlog.reader import find_start_by_time
from mysqlkit.full.chunks import plan_chunks
from mysqlkit.full.dump import SnapshotLock
from mysqlkit.full.dumpfiles import (
    chunk_file_name,
    chunk_file_rows,
    list_dump,
    read_create_table,
    write_metadata,
    write_schema_create,
    write_table_schema,
)
from mysqlkit.meta import done_chunks
from mysqlkit.position import BinlogPosition
from mysqlkit.retry import RetryClock, exhausted
from mysqlkit.routing import migrate_schemas, migrate_targets, router_for_source
from mysqlkit.schema.tableinfo import TableInfo, table_info
from mysqlkit.schema.tracker import SchemaTracker
from mysqlkit.sync import checkpoint as sync_checkpoint
from storage.eventstore import WrongExpectedVersion

log = logging.getLogger("dmray.runner")

WORKER_RETRIES = 3  # a chunk worker lost mid-load: new snapshot, remaining chunks again
# InnoDB rolled the chunk's transaction back (deadlock victim) or its statement (lock wait
# timeout; load_data then rolls back the rest): nothing of it is committed, so the chunk
# runs again. Seen when a restart's loads meet the rollback of the previous run's killed
# statements on the same rows.
LOCK_ERRNOS = frozenset({1205, 1213})
LOCK_RETRY_WAITS_S = (0.2, 0.5, 1.0, 2.0, 4.0)
PROGRESS_EVERY_S = 5.0
# Small enough that the last chunks do not leave lanes idle, large enough that a chunk
# (one transaction on the target) amortises its commit.
ROWS_PER_CHUNK = 50_000
# A sync worker lost more often than this (killed, its node gone) pauses the subtask.
SYNC_LOSSES_ALLOWED = 10
SYNC_LOSS_WINDOW_S = 300.0
# Safe mode after an automatic resume (a moved, replaced or restarted sync worker), as DM
# does for a minute after a resume: the replay from the checkpoint must be idempotent.
RESUME_SAFE_MODE_S = 60.0
# While its source has no live worker, a subtask asks again this often.
PLACEMENT_POLL_S = 0.5
# A bound worker that does not answer within this is taken as gone (its node lost).
WORKER_PROBE_S = 2.0


def chunk_key(c: dict[str, Any]) -> tuple[str, str, int]:
    return (c["schema"], c["table"], int(c["index"]))


class Superseded(Exception):
    """The runner is no longer its subtask's (stopped, moved): it records nothing more."""


class RunnerHost(Protocol):
    """What a subtask runner may see of its task actor, and the one way it may record an
    event on the task's stream: `record`, which the host serializes with its own commands
    and refuses (Superseded) once the runner is no longer the subtask's."""

    name: str
    cfg: RuntimeConfig
    start_options: dict[str, dict[str, Any]]

    @property
    def state(self) -> TaskState: ...

    def task_model(self) -> Task: ...

    def target_conn(self) -> upstream.ConnConfig: ...

    async def source_conn(self, source: str) -> upstream.ConnConfig: ...

    async def source_view(self, source: str) -> dict[str, Any]: ...

    async def record(self, runner: SubtaskRunner, event: DomainEvent) -> None: ...

    async def enter_sync(self, source: str, runner: SubtaskRunner) -> None: ...

    async def runner_done(self, source: str, runner: SubtaskRunner, error: DMError | None,
                          again: bool = False) -> None: ...


class SubtaskRunner:
    def __init__(self, mgr: RunnerHost, source: str, resumed: bool = False):
        self.mgr = mgr
        self.source = source
        # Started again by itself (moved to another worker, task actor restarted), not by
        # the user: a sync resumes in safe mode for a while.
        self.resumed = resumed
        self.unit = "Dump"
        self._task: asyncio.Task[None] | None = None
        self._workers: list[Any] = []
        self.total_chunks = 0
        self.total_tables = 0
        self.done_chunks = 0
        self.done_tables: set[tuple[str, str]] = set()
        self.done_keys: set[tuple[str, str, int]] = set()
        self.rows = 0
        self.bytes = 0
        self.est_rows = 0
        self.est_bytes = 0
        # `all`: the source's CREATE TABLEs as the dump read them (the sync's first tracker)
        self._dump_structures: dict[tuple[str, str], str] = {}
        self.started = time.monotonic()
        self.binlog = ""
        self.gtid = ""
        self.position: BinlogPosition | None = None
        self._sync_worker: Any = None
        self._indexes: IndexBuilder | None = None  # the load's deferred-index ALTERs
        self.sync_status: dict[str, Any] | None = None
        self.retrying = ""
        # The worker (and its Ray node) this subtask's data actors run on; None while
        # waiting for one. Work follows the binding: see _place().
        self.worker: str | None = None
        self.node_id: str | None = None
        self.relay_dir = ""  # the bound worker's relay files of the source, if any
        self.placed = asyncio.Event()  # set once placed (or ended): relocate waits for it

    @property
    def workers(self) -> list[Any]:
        return list(self._workers)

    @property
    def sync_worker(self) -> Any:
        return self._sync_worker

    # --- life cycle -----------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._kill_workers()

    def _kill_workers(self) -> None:
        if self._sync_worker is not None:
            self._workers.append(self._sync_worker)
            self._sync_worker = None
        for w in self._workers:
            try:
                ray.kill(w, no_restart=True)
            except Exception:  # already gone
                pass
        self._workers = []

    async def _run(self) -> None:
        error: DMError | None = None
        again = False
        try:
            await self._units_retrying()
        except asyncio.CancelledError:
            raise
        except Superseded:
            log.info("subtask %s/%s: superseded, ending", self.mgr.name, self.source)
        except DMError as exc:
            error = exc
        except WrongExpectedVersion:
            # Another writer of the task's stream (not one of this actor's: they are
            # serialized): an internal matter, never a pause. The state was reloaded; the
            # host starts the subtask again from it if it is still Running.
            log.warning("subtask %s/%s: the task's stream moved under us; starting again",
                        self.mgr.name, self.source)
            again = True
        except Exception as exc:  # anything unforeseen pauses the subtask, with a message
            log.exception("subtask %s/%s failed", self.mgr.name, self.source)
            error = API_ERROR(scrub(f"{type(exc).__name__}: {exc}"))
        finally:
            self._kill_workers()
            if self._indexes is not None:
                self._indexes.cancel()
            self.placed.set()
        await self.mgr.runner_done(self.source, self, error, again)

    async def _units_retrying(self) -> None:
        """The subtask's units; a retryable error (a server unreachable, a lost connection)
        runs them again from their checkpoints, shown in error_msg meanwhile, until
        retry_timeout has passed since it first failed; any other error pauses at once."""
        retry = RetryClock(self.mgr.cfg.retry_timeout)
        while True:
            try:
                await self._units()
                return
            except DMError as exc:
                delay = retry.next_delay() if exc.retryable else None
                if delay is None:
                    raise exhausted(exc) from None
                self.retrying = str(exc)
                log.warning("subtask %s/%s: %s; retrying in %.1fs", self.mgr.name,
                            self.source, exc.message, delay)
                self._kill_workers()
                if self._indexes is not None:
                    self._indexes.cancel()
                    self._indexes = None
                await asyncio.sleep(delay)

    async def _units(self) -> None:
        mode = self.mgr.state.task.get("task_mode", "full")
        if mode == "load":
            await self._load_files()
        elif mode == "incremental":
            await self._sync(all_mode=False)
        elif mode == "all":
            if self.mgr.state.subtasks[self.source].unit != "Sync":
                if not await self._has_sync_checkpoint():
                    await self._full()
                    # The snapshot transactions (and the metadata locks they hold on the
                    # source's tables) end with the dump: never held while replicating.
                    self._kill_workers()
                    await self._seed_sync_checkpoint()
                await self.mgr.enter_sync(self.source, self)
            await self._sync(all_mode=True)
        else:
            await self._full(to_files=mode == "dump")

    async def _seed_sync_checkpoint(self) -> None:
        """`all`: the sync's first checkpoint, at the dump's snapshot with the structures
        the dump read, written before the subtask enters Sync. Its sync worker may start a
        while later; by then the target (a shard merge's table, changed by another shard's
        DDL) or the source may have other structures than the binlog at the snapshot."""
        st = self.mgr.state.subtasks[self.source]
        task = self.mgr.task_model()
        tgt = self.mgr.target_conn()
        if await sync_checkpoint.load(tgt, task.meta_schema, task.name,
                                      self.source) is not None:
            return
        tracker = SchemaTracker()
        for (schema, table), sql in self._dump_structures.items():
            tracker.set_table(schema, table, sql)
        start = BinlogPosition(st.binlog_name, st.binlog_pos, st.binlog_gtid)
        last = BinlogPosition(st.last_binlog_name, st.last_binlog_pos, st.last_binlog_gtid) \
            if st.last_binlog_name else None
        await sync_checkpoint.save(tgt, task.meta_schema, task.name, self.source, start,
                                   last, tracker.to_dict())

    async def _has_sync_checkpoint(self) -> bool:
        """A sync checkpoint in the target (a task deleted with keep_meta and created
        again): the dump and load are done, as DM decides (IsFreshTask)."""
        task = self.mgr.task_model()
        cp = await sync_checkpoint.load(self.mgr.target_conn(), task.meta_schema, task.name,
                                        self.source)
        if cp is not None:
            log.info("subtask %s/%s: a sync checkpoint is there, going on in Sync",
                     self.mgr.name, self.source)
        return cp is not None

    # --- placement ------------------------------------------------------------------
    async def _place(self) -> dict[str, Any]:
        """Ray options that put a data actor on the node of the source's bound worker, so
        that the work follows the binding (transfer, failover). Waits while the source has
        no worker, or its worker does not answer (its node lost: the coordinator rebinds
        the source within heartbeat_timeout)."""
        self.worker = self.node_id = None
        while True:
            p = await self._placement()
            if p is not None:
                self.worker, self.node_id = p["worker"], p["node_id"]
                self.relay_dir = p.get("relay_dir", "")
                self.placed.set()
                return {"scheduling_strategy": NodeAffinitySchedulingStrategy(
                    node_id=p["node_id"], soft=False)}
            await asyncio.sleep(PLACEMENT_POLL_S)

    async def _placement(self) -> dict[str, str] | None:
        coordinator = get_actor(COORDINATOR)
        if coordinator is None:
            return None
        try:
            async with asyncio.timeout(WORKER_PROBE_S * 5):
                p: dict[str, str] = await coordinator.placement.remote(self.source)
            if not p["node_id"]:
                return None
            worker = get_actor(worker_actor_name(p["worker"]))
            if worker is None:
                return None
            async with asyncio.timeout(WORKER_PROBE_S):
                await worker.pid.remote()
        except (RayActorError, TimeoutError):
            return None
        return p

    # --- progress -------------------------------------------------------------------
    async def refresh(self) -> None:
        """Fetch the sync worker's status (what `progress` then shows)."""
        w = self._sync_worker
        if w is None:
            return
        try:
            async with asyncio.timeout(5.0):
                got = await w.status.remote()
            self.sync_status, self.retrying = got["sync_status"], got["retrying"]
        except (RayActorError, TimeoutError):
            pass  # a worker being replaced: keep the last figures

    def progress(self) -> dict[str, Any]:
        if self.unit == "Sync":
            out: dict[str, Any] = {"sync_status": self.sync_status or empty_sync_status()}
            if self.retrying:  # still Running: shown until the retry succeeds
                out["error_msg"] = self.retrying
            return out
        elapsed = max(time.monotonic() - self.started, 1e-3)
        pct = 100.0 * self.done_chunks / self.total_chunks if self.total_chunks else 0.0
        progress = f"{pct:.2f} %"
        bps = int(self.bytes / elapsed)
        out = {
            "dump_status": {"total_tables": self.total_tables,
                            "completed_tables": float(len(self.done_tables)),
                            "finished_bytes": float(self.bytes),
                            "finished_rows": float(self.rows),
                            "estimate_total_rows": float(self.est_rows),
                            "bps": bps, "progress": progress},
            "load_status": {"finished_bytes": self.bytes,
                            "total_bytes": self.bytes if pct >= 100 else self._total_bytes(),
                            "progress": progress, "meta_binlog": self.binlog,
                            "meta_binlog_gtid": self.gtid, "bps": bps},
        }
        if self.retrying:
            out["error_msg"] = self.retrying
        return out

    def _total_bytes(self) -> int:
        """What the load will have written in all, while it runs: the bytes so far scaled
        by the rows still to come, else the source's own size estimate."""
        if self.rows and self.est_rows > self.rows:
            return max(self.bytes, int(self.bytes * self.est_rows / self.rows))
        return max(self.bytes, self.est_bytes)

    async def _record_progress(self) -> None:
        await self.mgr.record(self, SubtaskProgress(
            source_name=self.source, unit=self.unit, finished_chunks=self.done_chunks,
            total_chunks=self.total_chunks, finished_rows=self.rows, finished_bytes=self.bytes))

    # --- the work -------------------------------------------------------------------
    def data_dir(self) -> Path:
        """dump/load modes: full_migrate_conf.data_dir (a folder per source when the task
        has several), else a folder in the server's data dir."""
        conf = self.mgr.task_model().source_config.full_migrate_conf
        sources = self.mgr.state.source_names()
        if conf and conf.data_dir:
            base = Path(conf.data_dir).expanduser()
            return base / self.source if len(sources) > 1 else base
        return Path(self.mgr.cfg.data_dir) / "dumps" / f"{self.mgr.name}.{self.source}"

    async def _full(self, to_files: bool = False) -> None:
        mgr = self.mgr
        task = mgr.task_model()
        src = await mgr.source_conn(self.source)
        tgt = mgr.target_conn()
        router = router_for_source(task, self.source)
        conf = task.source_config.full_migrate_conf
        export_threads = conf.export_threads if conf else 4
        import_threads = conf.import_threads if conf else 16
        consistency = (conf.consistency if conf else None) or "auto"
        on_dup = (conf.on_duplicate_logical if conf else None) or task.on_duplicate
        meta = task.meta_schema

        # Worker processes take a second or two to start: let them boot while we plan.
        await self._spawn_workers(src, tgt, export_threads, import_threads, on_dup, meta)
        # The table list and infos are read again on every (re)start; the chunk plan is not.
        pairs = await migrate_targets(src, router)
        schemas = await migrate_schemas(src, router)
        infos: dict[tuple[str, str], TableInfo] = {}
        async with upstream.open_conn(src) as conn:
            for s, _t in pairs:
                infos[(s.schema, s.table)] = await table_info(conn, s.schema, s.table)
            st = mgr.state.subtasks[self.source]
            if st.chunks is None:
                chunks: list[dict[str, Any]] = []
                for s, t in pairs:
                    for c in await plan_chunks(conn, infos[(s.schema, s.table)],
                                               rows_per_chunk=ROWS_PER_CHUNK):
                        chunks.append({"schema": s.schema, "table": s.table,
                                       "target_schema": t.schema, "target_table": t.table,
                                       "index": c.index, "where": c.where,
                                       "est_rows": c.est_rows})
                await mgr.record(self, DumpPlanned(source_name=self.source, chunks=chunks))
            plan = list(mgr.state.subtasks[self.source].chunks or [])

        self.total_chunks = len(plan)
        self.total_tables = len({(c["schema"], c["table"]) for c in plan})
        self.est_rows = sum(int(c.get("est_rows", 0)) for c in plan)
        self.est_bytes = sum(i.est_rows * i.avg_row_length for i in infos.values())
        self._dump_structures = {(s.schema, s.table): infos[(s.schema, s.table)].create_sql
                                 for s, _t in pairs}
        data_dir = self.data_dir()
        if to_files:
            started = dt.datetime.now()
            for schema, _target in schemas:
                write_schema_create(data_dir, schema)
            for s, _t in pairs:
                write_table_schema(data_dir, s.schema, s.table,
                                   infos[(s.schema, s.table)].create_sql)
            done = await asyncio.to_thread(_dumped_chunks, data_dir, plan)
        else:
            await create_schemas(tgt, sorted({t for _s, t in schemas}))
            pending = await create_tables(tgt, meta, mgr.name, self.source, [
                TargetTable(s.table, infos[(s.schema, s.table)].create_sql, t.schema, t.table)
                for s, t in pairs])
            self._indexes = IndexBuilder(tgt, meta, mgr.name, self.source, pending, plan,
                                         import_threads)
            done = await done_chunks(tgt, meta, mgr.name, self.source)
            self._indexes.update(done)
        self.retrying = ""  # source and target answer again
        self.rows = self.bytes = 0
        for rows, nbytes in done.values():
            self.rows += rows
            self.bytes += nbytes
        remaining = [c for c in plan if chunk_key(c) not in done]
        self.done_chunks = self.total_chunks - len(remaining)
        self.done_keys = set(done)
        self._update_done_tables(plan, self.done_keys)
        st = mgr.state.subtasks[self.source]
        if not plan and not st.binlog_name and not st.binlog_gtid:
            # Nothing to read (no table yet): the dump still stands for a point in the
            # binlog, where the sync starts and sees the tables being created. No lock:
            # there is no table to be consistent with.
            await self._snapshot_position(src)
        elif not plan:
            self.position = BinlogPosition(st.binlog_name, st.binlog_pos, st.binlog_gtid)

        attempt = 0
        while remaining:
            try:
                await self._run_chunks(remaining, src, tgt, infos, export_threads,
                                       import_threads, consistency, on_dup, meta,
                                       data_dir if to_files else None)
                remaining = []
            except RayActorError as exc:
                attempt += 1
                if attempt > WORKER_RETRIES:
                    raise API_ERROR(f"chunk workers lost {attempt} times: "
                                    f"{type(exc).__name__}") from None
                log.warning("subtask %s/%s: a chunk worker was lost, resuming",
                            mgr.name, self.source)
                self._kill_workers()
                if to_files:
                    remaining = [c for c in remaining if not (data_dir / chunk_file_name(
                        c["schema"], c["table"], int(c["index"]))).exists()]
                else:
                    done = await done_chunks(tgt, meta, mgr.name, self.source)
                    remaining = [c for c in plan if chunk_key(c) not in done]
                    if self._indexes is not None:  # chunks whose answer the lost worker took
                        self._indexes.update(done)
                self.done_chunks = self.total_chunks - len(remaining)
        if to_files:
            if self.position is not None:
                write_metadata(data_dir, self.position, started, dt.datetime.now())
        else:
            if self._indexes is not None:  # not Finished (nor Sync) before the last ALTER
                await self._indexes.finish()
            self.unit = "Load"
        await self._record_progress()

    async def _snapshot_position(self, src: upstream.ConnConfig) -> None:
        lock = SnapshotLock(src, "none")
        await lock.acquire()
        try:
            pos = await lock.position()
        finally:
            await lock.release()
        await self._record_snapshot(pos)

    async def _record_snapshot(self, pos: BinlogPosition) -> None:
        self.position = pos
        self.binlog = f"({pos.binlog_name}, {pos.binlog_pos})" if pos.binlog_name else ""
        self.gtid = pos.gtid or ""
        await self.mgr.record(self, DumpSnapshotTaken(
            source_name=self.source, binlog_name=pos.binlog_name, binlog_pos=pos.binlog_pos,
            binlog_gtid=pos.gtid or ""))

    async def _sync(self, all_mode: bool) -> None:
        """Incremental replication in a sync worker process; a lost worker is replaced and
        resumes from the checkpoint in the target."""
        mgr = self.mgr
        self.unit = "Sync"
        task = mgr.task_model()
        src = await mgr.source_conn(self.source)
        tgt = mgr.target_conn()
        view = await mgr.source_view(self.source)
        flavor = (await upstream.verify(src)).flavor
        st = mgr.state.subtasks[self.source]
        exit_safe: BinlogPosition | None = None
        if all_mode:
            start: BinlogPosition | None = BinlogPosition(st.binlog_name, st.binlog_pos,
                                                          st.binlog_gtid)
            if st.last_binlog_name:
                exit_safe = BinlogPosition(st.last_binlog_name, st.last_binlog_pos,
                                           st.last_binlog_gtid)
        else:
            conf = next(c for c in task.source_config.source_conf
                        if c.source_name == self.source)
            start = None
            if conf.binlog_name or conf.binlog_gtid:
                start = BinlogPosition(conf.binlog_name or "", int(conf.binlog_pos or 4),
                                       conf.binlog_gtid or "")
        opts = mgr.start_options.get(self.source, {})
        start_time = None if all_mode else opts.get("start_time")
        if start_time is not None:
            # DM: a start_time given on start wins over source_conf's position and over
            # the checkpoint (consumed once: a moved or restarted runner goes on from the
            # checkpoint it leaves).
            start = await self._start_at_time(src, tgt, task, flavor, float(start_time))
            opts["start_time"] = None
        spec = build_spec(task, self.source, src, tgt, flavor=flavor,
                          gtid_mode=bool(view.get("enable_gtid")), start=start,
                          start_time=None, exit_safe=exit_safe,
                          safe_mode_seconds=float(opts.get("safe_mode_seconds", 0.0)),
                          cfg=mgr.cfg)
        losses: list[float] = []
        while True:
            opts = await self._place()
            if self.resumed or losses:
                spec = dataclasses.replace(spec, safe_mode_seconds=max(
                    spec.safe_mode_seconds, RESUME_SAFE_MODE_S))
            spec = dataclasses.replace(spec, relay_dir=self.relay_dir,
                                       binlog_type="local" if self.relay_dir else "remote")
            self._sync_worker = _actor_class(SyncWorker).options(**opts).remote(spec)
            try:
                await _unwrapped(self._sync_worker.run.remote())
                return
            except RayActorError as exc:
                now = time.monotonic()
                losses = [t for t in losses if now - t < SYNC_LOSS_WINDOW_S] + [now]
                if len(losses) > SYNC_LOSSES_ALLOWED:
                    raise API_ERROR(f"sync worker lost {len(losses)} times within "
                                    f"{SYNC_LOSS_WINDOW_S:.0f}s: {type(exc).__name__}") from None
                log.warning("subtask %s/%s: the sync worker was lost, resuming from the "
                            "checkpoint", mgr.name, self.source)
                self._sync_worker = None
                await asyncio.sleep(0.5)

    async def _start_at_time(self, src: upstream.ConnConfig, tgt: upstream.ConnConfig,
                             task: Task, flavor: str, start_time: float) -> BinlogPosition:
        """The binlog position of `start_time`. A checkpoint already there is moved to it,
        keeping its tracker, and stays in safe mode up to where it was: rows between the
        two positions may be in the target already."""
        found = await asyncio.to_thread(
            find_start_by_time, src, int(start_time),
            server_id=replica_server_id(task.name, self.source), flavor=flavor)
        cp = await sync_checkpoint.load(tgt, task.meta_schema, task.name, self.source)
        if cp is not None:
            await sync_checkpoint.save(tgt, task.meta_schema, task.name, self.source, found,
                                       sync_checkpoint.later(cp.exit_safe, cp.position),
                                       cp.tracker)
        log.info("subtask %s/%s: start_time %s is at %s", task.name, self.source,
                 start_time, found)
        return found

    async def _load_files(self) -> None:
        """`load` mode: import a dump in data_dir, ours or mydumper's, routed by the task's
        rules, with the same per-file checkpoints as a pipelined load."""
        mgr = self.mgr
        task = mgr.task_model()
        tgt = mgr.target_conn()
        router = router_for_source(task, self.source)
        conf = task.source_config.full_migrate_conf
        import_threads = conf.import_threads if conf else 16
        on_dup = (conf.on_duplicate_logical if conf else None) or task.on_duplicate
        data_dir = self.data_dir()
        if not data_dir.is_dir():
            raise LOAD_DUMP_DIR_NOT_FOUND(str(data_dir))
        listing = await asyncio.to_thread(list_dump, data_dir)
        self.unit = "Load"
        if listing.metadata and listing.metadata.position:
            p = listing.metadata.position
            self.binlog = f"({p.binlog_name}, {p.binlog_pos})" if p.binlog_name else ""
            self.gtid = p.gtid
        plan: list[dict[str, Any]] = []
        tables: list[TargetTable] = []
        for t in listing.tables:
            dest = router.route(t.schema, t.table)
            if dest is None:
                continue
            create_sql = await asyncio.to_thread(read_create_table, t.schema_file)
            tables.append(TargetTable(t.table, create_sql, dest.schema, dest.table))
            for i, path in enumerate(t.data_files):
                plan.append({"schema": t.schema, "table": t.table, "index": i,
                             "path": str(path), "target_schema": dest.schema,
                             "target_table": dest.table,
                             "est_rows": 0, "size": path.stat().st_size})
        pending = await create_tables(tgt, task.meta_schema, mgr.name, self.source, tables)
        indexes = self._indexes = IndexBuilder(tgt, task.meta_schema, mgr.name, self.source,
                                               pending, plan, import_threads)
        self.total_chunks = len(plan)
        self.total_tables = len({(c["schema"], c["table"]) for c in plan})
        attempt = 0
        while True:
            done = await done_chunks(tgt, task.meta_schema, mgr.name, self.source)
            self.done_keys = set(done)
            self.rows = sum(r for r, _ in done.values())
            self.bytes = sum(b for _, b in done.values())
            remaining = [c for c in plan if chunk_key(c) not in done]
            self.done_chunks = self.total_chunks - len(remaining)
            self._update_done_tables(plan, self.done_keys)
            indexes.update(done)
            if not remaining:
                break
            try:
                await self._load_chunk_files(remaining, plan, tgt, import_threads, on_dup,
                                             task.meta_schema)
            except RayActorError as exc:
                attempt += 1
                if attempt > WORKER_RETRIES:
                    raise API_ERROR(f"load workers lost {attempt} times: "
                                    f"{type(exc).__name__}") from None
                self._kill_workers()
        await indexes.finish()  # not Finished before the last ALTER
        await self._record_progress()

    async def _load_chunk_files(self, remaining: list[dict[str, Any]],
                                plan: list[dict[str, Any]], tgt: upstream.ConnConfig,
                                import_threads: int, on_dup: str, meta: str) -> None:
        n_workers = max(1, min(import_threads, 2, len(remaining)))
        lanes_per_worker = math.ceil(import_threads / n_workers)
        opts = await self._place()
        self._workers = [
            _actor_class(ChunkWorker).options(**opts).remote(
                tgt, tgt, self.mgr.name, self.source, meta, on_dup, lanes_per_worker)
            for _ in range(n_workers)
        ]
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for c in sorted(remaining, key=lambda c: -int(c["size"])):  # big files first
            queue.put_nowait(c)

        async def lane(worker: Any) -> None:
            while True:
                try:
                    c = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                res = await _retrying_locks(c, worker.load_file, c)
                self._chunk_done(c, res, plan)

        await asyncio.gather(*(lane(w) for w in self._workers for _ in range(lanes_per_worker)))

    def _chunk_done(self, c: dict[str, Any], res: dict[str, int],
                    plan: list[dict[str, Any]]) -> None:
        self.rows += res["rows"]
        self.bytes += res["bytes"]
        self.done_chunks += 1
        self.done_keys.add(chunk_key(c))
        self._update_done_tables(plan, self.done_keys)
        if self._indexes is not None:
            self._indexes.update([chunk_key(c)])
            self._indexes.check()  # a failed ALTER stops the lanes: the subtask pauses

    async def _spawn_workers(self, src: upstream.ConnConfig, tgt: upstream.ConnConfig,
                             export_threads: int, import_threads: int, on_dup: str,
                             meta: str) -> int:
        """Start the chunk workers unless they run already; returns readers per worker.
        Two processes at most: the work is the servers' and Python's, on few cores."""
        n_workers = max(1, min(export_threads, 2))
        readers = math.ceil(export_threads / n_workers)
        writers = max(readers, math.ceil(import_threads / n_workers))
        if len(self._workers) != n_workers:
            self._kill_workers()
            opts = await self._place()
            self._workers = [
                _actor_class(ChunkWorker).options(**opts).remote(
                    src, tgt, self.mgr.name, self.source, meta, on_dup, writers)
                for _ in range(n_workers)
            ]
        return readers

    def _update_done_tables(self, plan: list[dict[str, Any]],
                            done: Container[tuple[str, str, int]]) -> None:
        by_table: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        for c in plan:
            by_table.setdefault((c["schema"], c["table"]), []).append(chunk_key(c))
        self.done_tables = {t for t, keys in by_table.items() if all(k in done for k in keys)}

    async def _run_chunks(self, remaining: list[dict[str, Any]], src: upstream.ConnConfig,
                          tgt: upstream.ConnConfig, infos: dict[tuple[str, str], TableInfo],
                          export_threads: int, import_threads: int, consistency: str,
                          on_dup: str, meta: str, data_dir: Path | None) -> None:
        readers = await self._spawn_workers(src, tgt, export_threads, import_threads, on_dup, meta)
        tables = sorted({(c["schema"], c["table"]) for c in remaining})
        lock = SnapshotLock(src, consistency, tables)
        await lock.acquire()
        try:
            await asyncio.gather(*(w.open_readers.remote(readers) for w in self._workers))
            pos = await lock.position()
        finally:
            await lock.release()
        await self._record_snapshot(pos)

        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for c in remaining:
            queue.put_nowait(c)
        all_chunks = list(self.mgr.state.subtasks[self.source].chunks or [])
        last_progress = time.monotonic()

        async def lane(worker: Any) -> None:
            nonlocal last_progress
            while True:
                try:
                    c = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                info = infos[(c["schema"], c["table"])]
                if data_dir is None:
                    res = await _retrying_locks(c, worker.run_chunk, c, info)
                else:
                    res = await _unwrapped(worker.dump_chunk_to_file.remote(
                        c, info, str(data_dir)))
                self._chunk_done(c, res, all_chunks)
                if time.monotonic() - last_progress > PROGRESS_EVERY_S:
                    last_progress = time.monotonic()
                    await self._record_progress()

        lanes = [lane(w) for w in self._workers for _ in range(readers)]
        await asyncio.gather(*lanes)


def _dumped_chunks(data_dir: Path, plan: list[dict[str, Any]]
                   ) -> dict[tuple[str, str, int], tuple[int, int]]:
    """`dump` mode's checkpoints: the chunk files already written, (rows, bytes) each."""
    out = {}
    for c in plan:
        path = data_dir / chunk_file_name(c["schema"], c["table"], int(c["index"]))
        if path.exists():
            out[chunk_key(c)] = (chunk_file_rows(path), path.stat().st_size)
    return out


def _actor_class(cls: Any) -> Any:
    """A Ray actor class as mypy should see it (its `options` is added by the decorator)."""
    return cls


def empty_sync_status() -> dict[str, Any]:
    return {"total_events": 0, "total_tps": 0, "recent_tps": 0, "master_binlog": "",
            "master_binlog_gtid": "", "syncer_binlog": "", "syncer_binlog_gtid": "",
            "blocking_ddls": [], "unresolved_groups": [], "synced": False,
            "binlog_type": "remote", "seconds_behind_master": 0, "io_total_bytes": 0,
            "dump_io_total_bytes": 0}


async def _retrying_locks(c: dict[str, Any], method: Any, *args: Any) -> Any:
    """The chunk worker `method`'s result for chunk `c`, run again after a lock conflict
    (LOCK_ERRNOS)."""
    for wait in (*LOCK_RETRY_WAITS_S, None):
        try:
            return await _unwrapped(method.remote(*args))
        except DMError as err:
            if wait is None or upstream.dm_errno(err) not in LOCK_ERRNOS:
                raise
            log.warning("chunk %s.%s #%s: %s; loading it again in %.1fs", c["schema"],
                        c["table"], c["index"], err.cause, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


async def _unwrapped(ref: Any) -> Any:
    """A chunk worker's DMError as itself (it pauses the subtask with its message)."""
    try:
        return await ref
    except RayTaskError as exc:
        if isinstance(exc.cause, DMError):
            raise exc.cause from None
        raise
