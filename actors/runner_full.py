"""The full-migration units of a subtask (Dump and Load, or Load from files): plan
chunks, one consistent snapshot across chunk-worker processes, chunks dumped and loaded
(pipelined: a chunk is loaded as soon as it is read, no files in between unless the mode
asks for them). Resumable: a chunk's completion is a row in the target's meta schema,
written in the same transaction as the chunk's rows, and the chunk plan is an event."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Container
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.exceptions import RayActorError

from actors.chunk_worker import ChunkWorker
from actors.deferred_indexes import (
    IndexBuilder,
    TargetTable,
    create_schemas,
    create_tables,
)
from actors.remote import actor_class, unwrapped
from errors import API_ERROR, LOAD_DUMP_DIR_NOT_FOUND, DMError
from events.task import DumpPlanned, DumpSnapshotTaken
from mysqlkit import upstream
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
from mysqlkit.routing import migrate_schemas, migrate_targets, router_for_source
from mysqlkit.schema.tableinfo import TableInfo, table_info

if TYPE_CHECKING:
    from actors.runner import SubtaskRunner

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


class FullUnits:
    """The Dump and Load units of one subtask runner (its counters and workers stay on the
    runner, which shows them in `progress`)."""

    def __init__(self, runner: SubtaskRunner) -> None:
        self.r = runner

    # --- the work -------------------------------------------------------------------
    def data_dir(self) -> Path:
        """dump/load modes: full_migrate_conf.data_dir (a folder per source when the task
        has several), else a folder in the server's data dir."""
        conf = self.r.mgr.task_model().source_config.full_migrate_conf
        sources = self.r.mgr.state.source_names()
        if conf and conf.data_dir:
            base = self.r.mgr.cfg.inside_roots("data_dir", conf.data_dir)
            return base / self.r.source if len(sources) > 1 else base
        return Path(self.r.mgr.cfg.data_dir) / "dumps" / f"{self.r.mgr.name}.{self.r.source}"

    async def run(self, to_files: bool = False) -> None:
        mgr = self.r.mgr
        task = mgr.task_model()
        src = await mgr.source_conn(self.r.source)
        tgt = mgr.target_conn()
        router = router_for_source(task, self.r.source)
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
            st = mgr.state.subtasks[self.r.source]
            if st.chunks is None:
                chunks: list[dict[str, Any]] = []
                for s, t in pairs:
                    for c in await plan_chunks(conn, infos[(s.schema, s.table)],
                                               rows_per_chunk=ROWS_PER_CHUNK):
                        chunks.append({"schema": s.schema, "table": s.table,
                                       "target_schema": t.schema, "target_table": t.table,
                                       "index": c.index, "where": c.where,
                                       "est_rows": c.est_rows})
                await mgr.record(self.r, DumpPlanned(source_name=self.r.source, chunks=chunks))
            plan = list(mgr.state.subtasks[self.r.source].chunks or [])

        self.r.total_chunks = len(plan)
        self.r.total_tables = len({(c["schema"], c["table"]) for c in plan})
        self.r.est_rows = sum(int(c.get("est_rows", 0)) for c in plan)
        self.r.est_bytes = sum(i.est_rows * i.avg_row_length for i in infos.values())
        self.r.dump_structures = {(s.schema, s.table): infos[(s.schema, s.table)].create_sql
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
            pending = await create_tables(tgt, meta, mgr.name, self.r.source, [
                TargetTable(s.table, infos[(s.schema, s.table)].create_sql, t.schema, t.table)
                for s, t in pairs])
            self.r.indexes = IndexBuilder(tgt, meta, mgr.name, self.r.source, pending, plan,
                                         import_threads)
            done = await done_chunks(tgt, meta, mgr.name, self.r.source)
            self.r.indexes.update(done)
        self.r.retrying = ""  # source and target answer again
        self.r.rows = self.r.bytes = 0
        for rows, nbytes in done.values():
            self.r.rows += rows
            self.r.bytes += nbytes
        remaining = [c for c in plan if chunk_key(c) not in done]
        self.r.done_chunks = self.r.total_chunks - len(remaining)
        self.r.done_keys = set(done)
        self._update_done_tables(plan, self.r.done_keys)
        st = mgr.state.subtasks[self.r.source]
        if not plan and not st.binlog_name and not st.binlog_gtid:
            # Nothing to read (no table yet): the dump still stands for a point in the
            # binlog, where the sync starts and sees the tables being created. No lock:
            # there is no table to be consistent with.
            await self._snapshot_position(src)
        elif not plan:
            self.r.position = BinlogPosition(st.binlog_name, st.binlog_pos, st.binlog_gtid)

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
                            mgr.name, self.r.source)
                self.r.kill_workers()
                if to_files:
                    remaining = [c for c in remaining if not (data_dir / chunk_file_name(
                        c["schema"], c["table"], int(c["index"]))).exists()]
                else:
                    done = await done_chunks(tgt, meta, mgr.name, self.r.source)
                    remaining = [c for c in plan if chunk_key(c) not in done]
                    if self.r.indexes is not None:  # chunks whose answer the lost worker took
                        self.r.indexes.update(done)
                self.r.done_chunks = self.r.total_chunks - len(remaining)
        if to_files:
            if self.r.position is not None:
                write_metadata(data_dir, self.r.position, started, dt.datetime.now())
        else:
            if self.r.indexes is not None:  # not Finished (nor Sync) before the last ALTER
                await self.r.indexes.finish()
            self.r.unit = "Load"
        await self.r.record_progress()

    async def _snapshot_position(self, src: upstream.ConnConfig) -> None:
        lock = SnapshotLock(src, "none")
        await lock.acquire()
        try:
            pos = await lock.position()
        finally:
            await lock.release()
        await self.record_snapshot(pos)

    async def record_snapshot(self, pos: BinlogPosition) -> None:
        self.r.position = pos
        self.r.binlog = f"({pos.binlog_name}, {pos.binlog_pos})" if pos.binlog_name else ""
        self.r.gtid = pos.gtid or ""
        await self.r.mgr.record(self.r, DumpSnapshotTaken(
            source_name=self.r.source, binlog_name=pos.binlog_name, binlog_pos=pos.binlog_pos,
            binlog_gtid=pos.gtid or ""))

    async def load_files(self) -> None:
        """`load` mode: import a dump in data_dir, ours or mydumper's, routed by the task's
        rules, with the same per-file checkpoints as a pipelined load."""
        mgr = self.r.mgr
        task = mgr.task_model()
        tgt = mgr.target_conn()
        router = router_for_source(task, self.r.source)
        conf = task.source_config.full_migrate_conf
        import_threads = conf.import_threads if conf else 16
        on_dup = (conf.on_duplicate_logical if conf else None) or task.on_duplicate
        data_dir = self.data_dir()
        if not data_dir.is_dir():
            raise LOAD_DUMP_DIR_NOT_FOUND(str(data_dir))
        listing = await asyncio.to_thread(list_dump, data_dir)
        self.r.unit = "Load"
        if listing.metadata and listing.metadata.position:
            p = listing.metadata.position
            self.r.binlog = f"({p.binlog_name}, {p.binlog_pos})" if p.binlog_name else ""
            self.r.gtid = p.gtid
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
        pending = await create_tables(tgt, task.meta_schema, mgr.name, self.r.source, tables)
        indexes = self.r.indexes = IndexBuilder(tgt, task.meta_schema, mgr.name, self.r.source,
                                               pending, plan, import_threads)
        self.r.total_chunks = len(plan)
        self.r.total_tables = len({(c["schema"], c["table"]) for c in plan})
        attempt = 0
        while True:
            done = await done_chunks(tgt, task.meta_schema, mgr.name, self.r.source)
            self.r.done_keys = set(done)
            self.r.rows = sum(r for r, _ in done.values())
            self.r.bytes = sum(b for _, b in done.values())
            remaining = [c for c in plan if chunk_key(c) not in done]
            self.r.done_chunks = self.r.total_chunks - len(remaining)
            self._update_done_tables(plan, self.r.done_keys)
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
                self.r.kill_workers()
        await indexes.finish()  # not Finished before the last ALTER
        await self.r.record_progress()

    async def _load_chunk_files(self, remaining: list[dict[str, Any]],
                                plan: list[dict[str, Any]], tgt: upstream.ConnConfig,
                                import_threads: int, on_dup: str, meta: str) -> None:
        n_workers = max(1, min(import_threads, 2, len(remaining)))
        lanes_per_worker = math.ceil(import_threads / n_workers)
        opts = await self.r.place()
        self.r.chunk_workers = [
            actor_class(ChunkWorker).options(**opts).remote(
                tgt, tgt, self.r.mgr.name, self.r.source, meta, on_dup, lanes_per_worker)
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

        await asyncio.gather(*(lane(w) for w in self.r.chunk_workers
                               for _ in range(lanes_per_worker)))

    def _chunk_done(self, c: dict[str, Any], res: dict[str, int],
                    plan: list[dict[str, Any]]) -> None:
        self.r.rows += res["rows"]
        self.r.bytes += res["bytes"]
        self.r.done_chunks += 1
        self.r.done_keys.add(chunk_key(c))
        self._update_done_tables(plan, self.r.done_keys)
        if self.r.indexes is not None:
            self.r.indexes.update([chunk_key(c)])
            self.r.indexes.check()  # a failed ALTER stops the lanes: the subtask pauses

    async def _spawn_workers(self, src: upstream.ConnConfig, tgt: upstream.ConnConfig,
                             export_threads: int, import_threads: int, on_dup: str,
                             meta: str) -> int:
        """Start the chunk workers unless they run already; returns readers per worker.
        Two processes at most: the work is the servers' and Python's, on few cores."""
        n_workers = max(1, min(export_threads, 2))
        readers = math.ceil(export_threads / n_workers)
        writers = max(readers, math.ceil(import_threads / n_workers))
        if len(self.r.chunk_workers) != n_workers:
            self.r.kill_workers()
            opts = await self.r.place()
            self.r.chunk_workers = [
                actor_class(ChunkWorker).options(**opts).remote(
                    src, tgt, self.r.mgr.name, self.r.source, meta, on_dup, writers)
                for _ in range(n_workers)
            ]
        return readers

    def _update_done_tables(self, plan: list[dict[str, Any]],
                            done: Container[tuple[str, str, int]]) -> None:
        by_table: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        for c in plan:
            by_table.setdefault((c["schema"], c["table"]), []).append(chunk_key(c))
        self.r.done_tables = {t for t, keys in by_table.items() if all(k in done for k in keys)}

    async def _run_chunks(self, remaining: list[dict[str, Any]], src: upstream.ConnConfig,
                          tgt: upstream.ConnConfig, infos: dict[tuple[str, str], TableInfo],
                          export_threads: int, import_threads: int, consistency: str,
                          on_dup: str, meta: str, data_dir: Path | None) -> None:
        readers = await self._spawn_workers(src, tgt, export_threads, import_threads, on_dup, meta)
        tables = sorted({(c["schema"], c["table"]) for c in remaining})
        lock = SnapshotLock(src, consistency, tables)
        await lock.acquire()
        try:
            await asyncio.gather(*(w.open_readers.remote(readers) for w in self.r.chunk_workers))
            pos = await lock.position()
        finally:
            await lock.release()
        await self.record_snapshot(pos)

        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for c in remaining:
            queue.put_nowait(c)
        all_chunks = list(self.r.mgr.state.subtasks[self.r.source].chunks or [])
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
                    res = await unwrapped(worker.dump_chunk_to_file.remote(
                        c, info, str(data_dir)))
                self._chunk_done(c, res, all_chunks)
                if time.monotonic() - last_progress > PROGRESS_EVERY_S:
                    last_progress = time.monotonic()
                    await self.r.record_progress()

        lanes = [lane(w) for w in self.r.chunk_workers for _ in range(readers)]
        await asyncio.gather(*lanes)


def chunk_key(c: dict[str, Any]) -> tuple[str, str, int]:
    return (c["schema"], c["table"], int(c["index"]))


def _dumped_chunks(data_dir: Path, plan: list[dict[str, Any]]
                   ) -> dict[tuple[str, str, int], tuple[int, int]]:
    """`dump` mode's checkpoints: the chunk files already written, (rows, bytes) each."""
    out = {}
    for c in plan:
        path = data_dir / chunk_file_name(c["schema"], c["table"], int(c["index"]))
        if path.exists():
            out[chunk_key(c)] = (chunk_file_rows(path), path.stat().st_size)
    return out


async def _retrying_locks(c: dict[str, Any], method: Any, *args: Any) -> Any:
    """The chunk worker `method`'s result for chunk `c`, run again after a lock conflict
    (LOCK_ERRNOS)."""
    for wait in (*LOCK_RETRY_WAITS_S, None):
        try:
            return await unwrapped(method.remote(*args))
        except DMError as err:
            if wait is None or upstream.dm_errno(err) not in LOCK_ERRNOS:
                raise
            log.warning("chunk %s.%s #%s: %s; loading it again in %.1fs", c["schema"],
                        c["table"], c["index"], err.cause, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
