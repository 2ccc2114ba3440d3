"""The task actor: owns one task's stream and runs its subtasks (one per source).

Stages and units are decisions, recorded as events; the data itself moves through chunk
workers (actors/chunk_worker.py) and its progress is checkpointed in the target's meta
schema, in the same transaction as the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import ray

from actors.chaos import jitter, with_jitter
from actors.config import RuntimeConfig
from actors.forwarding import forwards
from actors.remote import call, source_actor_name
from actors.runner import SubtaskRunner, Superseded, empty_sync_status
from actors.task_spec import masked, opened, resealed, same_task, sealed, target_conn
from domain.durations import parse_go_duration, parse_start_time
from domain.task import FINISHED, PAUSED, RUNNING, STOPPED, SubtaskState, TaskState
from domain.task_models import OperateTaskTableStructureRequest, StartTaskRequest, Task
from errors import (
    API_ERROR,
    META_NOT_SET,
    SCHEMA_INVALID_SQL,
    SCHEMA_TABLE_NOT_TRACKED,
    SUBTASK_RUNNING,
    TASK_NOT_EXISTS,
    DMError,
)
from events.base import DomainEvent
from events.task import (
    SubtaskMetaRemoved,
    SubtaskStageChanged,
    TaskCreated,
    TaskDeleted,
    TaskUpdated,
    task_stream,
)
from mysqlkit import upstream
from mysqlkit.meta import drop_task_meta
from mysqlkit.position import BinlogPosition
from mysqlkit.routing import router_for_source
from mysqlkit.schema.ddl import parse_create_statement
from mysqlkit.schema.tracker import SchemaTracker, load_table
from mysqlkit.sync import checkpoint as sync_checkpoint
from storage.aggregate import Aggregate
from storage.eventstore import EventStore

log = logging.getLogger("dmray.task")

# How long a relocation waits for the moved subtask to be placed on its new worker.
RELOCATE_WAIT_S = 10.0

UNITS = {"full": "Dump", "dump": "Dump", "load": "Load", "all": "Dump", "incremental": "Sync"}


class TaskManager:
    """Plain state manager behind the task actor."""

    def __init__(self, name: str, cfg: RuntimeConfig):
        self.name = name
        self.cfg = cfg
        self.store = EventStore(cfg.store_url)
        self.agg = Aggregate(self.store, task_stream(name), TaskState)
        self.box = cfg.secret_box()
        self._lock = asyncio.Lock()
        self._loaded = False
        self.runners: dict[str, SubtaskRunner] = {}
        # A finished runner's last figures, for status (after a restart: the log's).
        self.last_progress: dict[str, dict[str, Any]] = {}
        # start_time / safe_mode_time_duration of the last start, per source
        self.start_options: dict[str, dict[str, Any]] = {}

    @property
    def state(self) -> TaskState:
        return self.agg.state

    async def ready(self) -> TaskState:
        if not self._loaded:
            async with self._lock:
                if not self._loaded:
                    await self.agg.load()
                    self._loaded = True
                    # A restarted actor picks up what was running: the checkpoints in the
                    # target tell each runner where to go on.
                    for source, st in self.state.subtasks.items():
                        if self.state.exists and st.stage == RUNNING:
                            self._launch(source, resumed=True)
        return self.state

    def _require(self) -> None:
        if not self.state.exists:
            raise TASK_NOT_EXISTS(self.name)

    # --- stored form ----------------------------------------------------------------
    @property
    def document(self) -> dict[str, Any]:
        """The stored Task, without its secrets."""
        return self.state.spec.document if self.state.spec is not None else {}

    def plain(self) -> dict[str, Any]:
        assert self.state.spec is not None
        return masked(self.state.spec)

    def task_model(self) -> Task:
        assert self.state.spec is not None
        return opened(self.state.spec, self.box)

    def target_conn(self) -> upstream.ConnConfig:
        return target_conn(self.task_model())

    # --- commands -------------------------------------------------------------------
    async def create(self, request_id: str, task: Task) -> dict[str, Any]:
        async with self._lock:
            await self._ready_unlocked()
            if self.state.exists and self.state.request_id == request_id:
                return self.plain()
            await self.agg.record(TaskCreated(request_id=request_id,
                                              task=sealed(task, self.box)))
            return self.plain()

    async def reseal(self) -> bool:
        """After a key rotation: the stored secrets encrypted again with the first key."""
        await self.ready()
        async with self._lock:
            self.box.reload()
            if self.state.spec is None:
                return False
            await self.agg.record(TaskUpdated(task=resealed(self.state.spec, self.box)))
            return True

    async def _ready_unlocked(self) -> None:
        if not self._loaded:
            await self.agg.load()
            self._loaded = True

    async def update(self, model: Task) -> dict[str, Any]:
        await self.ready()
        async with self._lock:
            self._require()
            if self.running_sources():
                raise SUBTASK_RUNNING(self.name)
            # A secret sent back masked (GET, then PUT) keeps the stored one.
            spec = sealed(model, self.box, keep=self.state.spec)
            if self.state.spec is None or not same_task(spec, self.state.spec, self.box):
                await self.agg.record(TaskUpdated(task=spec))
            return self.plain()

    def running_sources(self) -> list[str]:
        return [s for s, st in self.state.subtasks.items() if st.stage == RUNNING]

    async def delete(self, keep_meta: bool) -> None:
        await self.ready()
        async with self._lock:
            if not self.state.exists:
                return
            for source in list(self.runners):
                await self._cancel(source)
            if not keep_meta:
                try:
                    await drop_task_meta(self.target_conn(), self.meta_schema(), self.name,
                                           None)
                except DMError as err:  # an unreachable target must not block a delete
                    log.warning("task %s: checkpoints not dropped: %s", self.name, err.message)
            await self.agg.record(TaskDeleted())

    def meta_schema(self) -> str:
        return str(self.document.get("meta_schema") or "dm_meta")

    def _select(self, sources: list[str] | None) -> list[str]:
        names = self.state.source_names()
        if not sources:
            return names
        unknown = [s for s in sources if s not in names]
        if unknown:
            raise API_ERROR(f"sources {unknown} are not in task {self.name}")
        return [s for s in names if s in sources]

    async def start_request(self, req: StartTaskRequest) -> None:
        """A start as the API asks it: start_time in the task's own timezone, the safe
        mode duration as Go writes it."""
        await self.ready()
        self._require()
        start_time = parse_start_time(req.start_time, self.document.get("timezone")) \
            if req.start_time else None
        safe_s = parse_go_duration(req.safe_mode_time_duration) \
            if req.safe_mode_time_duration else 0.0
        await self.start(req.source_name_list, req.remove_meta, start_time, safe_s)

    async def start(self, sources: list[str] | None, remove_meta: bool,
                    start_time: float | None = None, safe_mode_seconds: float = 0.0) -> None:
        await self.ready()
        async with self._lock:
            self._require()
            mode = self.document["task_mode"]
            chosen = self._select(sources)
            if mode == "incremental" and start_time is None:
                await self._require_meta(chosen, remove_meta)
            for source in chosen:
                st = self.state.subtasks[source]
                if st.stage == RUNNING and source in self.runners:
                    continue  # idempotent: already running
                if remove_meta:
                    await drop_task_meta(self.target_conn(), self.meta_schema(), self.name,
                                           source)
                    await self.agg.record(SubtaskMetaRemoved(source_name=source))
                    st = self.state.subtasks[source]
                self.start_options[source] = {"start_time": start_time,
                                              "safe_mode_seconds": safe_mode_seconds}
                unit = st.unit or UNITS[mode]
                await self.agg.record(SubtaskStageChanged(source_name=source, stage=RUNNING,
                                                          unit=unit))
                self._launch(source)

    async def _require_meta(self, sources: list[str], remove_meta: bool) -> None:
        """20022 for an incremental subtask with nowhere to start: no binlog position in
        its source_conf, no start_time, no checkpoint to resume from."""
        confs = {c.source_name: c for c in self.task_model().source_config.source_conf}
        for source in sources:
            conf = confs[source]
            if conf.binlog_name or conf.binlog_gtid:
                continue
            if not remove_meta and await sync_checkpoint.load(
                    self.target_conn(), self.meta_schema(), self.name, source) is not None:
                continue
            raise META_NOT_SET("incremental")

    async def enter_sync(self, source: str, runner: SubtaskRunner) -> None:
        """`all`: the dump and load are done, the subtask goes on in the Sync unit."""
        await jitter("TaskManager.enter_sync")
        async with self._lock:
            if self.runners.get(source) is runner:
                await self.agg.record(SubtaskStageChanged(source_name=source, stage=RUNNING,
                                                          unit="Sync"))

    async def source_view(self, source: str) -> dict[str, Any]:
        handle = ray.get_actor(source_actor_name(source), namespace="dmray")
        return dict(await call(handle.get.remote()) or {})

    async def stop(self, sources: list[str] | None) -> None:
        await self.ready()
        async with self._lock:
            self._require()
            for source in self._select(sources):
                st = self.state.subtasks[source]
                await self._cancel(source)
                if st.stage == RUNNING:
                    await self.agg.record(SubtaskStageChanged(source_name=source, stage=PAUSED,
                                                              unit=st.unit))

    # --- runners --------------------------------------------------------------------
    def _launch(self, source: str, resumed: bool = False) -> None:
        runner = SubtaskRunner(self, source, resumed)
        self.runners[source] = runner
        runner.start()

    async def _cancel(self, source: str) -> None:
        runner = self.runners.pop(source, None)
        if runner is not None:
            await runner.refresh()
            await runner.cancel()
            self.last_progress[source] = runner.progress()

    async def relocate(self, source: str, worker: str, relay_dir: str = "") -> None:
        """The source is bound to another worker (transfer, failover), or its relay log was
        enabled/disabled there: a runner placed on the old one stops its data actors and a
        new runner goes on from the checkpoints on the new worker's node (a Sync runner
        reading the relay files there). A runner still waiting for a worker finds it by
        itself."""
        await self.ready()
        async with self._lock:
            runner = self.runners.get(source)
            if runner is None or runner.worker is None:
                return
            relay_changed = runner.unit == "Sync" and runner.relay_dir != relay_dir
            if runner.worker == worker and not relay_changed:
                return
            log.info("task %s: subtask %s moves from %s to %s", self.name, source,
                     runner.worker, worker or "no worker")
            await self._cancel(source)
            self._launch(source, resumed=True)
            runner = self.runners[source]
        # Answer once the new runner has placed its data actors (a transfer's caller then
        # sees the subtask on the new worker), or has ended; bounded, as it may wait for one.
        if worker:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.placed.wait(), RELOCATE_WAIT_S)

    async def record(self, runner: SubtaskRunner, event: DomainEvent) -> None:
        """A runner's event (progress, plan, snapshot) on the task's stream. Appends are
        serialized by the aggregate, so a runner never races a command or another runner;
        a runner that is no longer its subtask's (stopped, moved) records nothing."""
        await jitter("TaskManager.record")
        if self.runners.get(runner.source) is not runner:
            raise Superseded(runner.source)
        await self.agg.record(event)

    def running_unit(self, source: str) -> str | None:
        st = self.state.subtasks.get(source)
        return st.unit if st is not None and st.stage == RUNNING else None

    async def runner_done(self, source: str, runner: SubtaskRunner,
                          error: DMError | None, again: bool = False) -> None:
        """Called by a runner when it ends by itself: finished, paused by an error, or
        (`again`) ended by an internal matter that a fresh runner resolves."""
        await jitter("TaskManager.runner_done")
        async with self._lock:
            if self.runners.get(source) is not runner:
                return  # cancelled meanwhile: stop() or delete() recorded the stage
            del self.runners[source]
            self.last_progress[source] = runner.progress()
            st = self.state.subtasks.get(source)
            if st is None or st.stage != RUNNING:
                return
            if again:
                self._launch(source, resumed=True)
                return
            if error is None:
                await self.agg.record(SubtaskStageChanged(source_name=source, stage=FINISHED,
                                                          unit=runner.unit))
            else:
                await self.agg.record(SubtaskStageChanged(
                    source_name=source, stage=PAUSED, unit=runner.unit, error_msg=str(error)))

    async def source_conn(self, source: str) -> upstream.ConnConfig:
        handle = ray.get_actor(source_actor_name(source), namespace="dmray")
        conn: upstream.ConnConfig = await call(handle.conn_config.remote())
        return conn

    # --- schema tracker -------------------------------------------------------------
    async def schema_op(self, source: str, op: str, schema: str | None, table: str | None,
                        body: dict[str, Any] | None) -> Any:
        """GET lists/structures from the live tracker (running) or the checkpoint's;
        PUT/DELETE change the checkpoint's tracker while the subtask is not running."""
        await self.ready()
        self._require()
        runner = self.runners.get(source)
        if op in ("put", "delete"):
            if runner is not None:
                raise API_ERROR(f"subtask {self.name}/{source} is running: stop it before "
                                "changing its schema tracker")
            cp = await sync_checkpoint.load(self.target_conn(), self.meta_schema(), self.name,
                                            source)
            if cp is None:
                raise API_ERROR(f"subtask {self.name}/{source} has no schema tracker yet: "
                                "start it in Sync first")
            tracker = SchemaTracker.from_dict(cp.tracker or {})
            assert schema is not None and table is not None
            if op == "delete":
                if tracker.get(schema, table) is None:
                    raise SCHEMA_TABLE_NOT_TRACKED(f"`{schema}`.`{table}`")
                tracker.remove_table(schema, table)
            else:
                req = OperateTaskTableStructureRequest.model_validate(body or {})
                sql = await self._structure_from(source, req, schema, table)
                tracker.set_table(schema, table, sql)
            await sync_checkpoint.save(self.target_conn(), self.meta_schema(), self.name,
                                       source, cp.position, cp.exit_safe, tracker.to_dict())
            return None
        tracker = await self._tracker(source, runner)
        if schema is None:
            return tracker.list_schemas()
        if table is None:
            return tracker.list_tables(schema)
        ts = tracker.get(schema, table)
        if ts is None:
            raise SCHEMA_TABLE_NOT_TRACKED(f"`{schema}`.`{table}`")
        return {"schema_name": schema, "table_name": table,
                "schema_create_sql": ts.create_sql()}

    async def _tracker(self, source: str, runner: SubtaskRunner | None) -> SchemaTracker:
        if runner is not None and runner.sync_worker is not None:
            with contextlib.suppress(ray.exceptions.RayActorError):
                return SchemaTracker.from_dict(await runner.sync_worker.tracker.remote())
        cp = await sync_checkpoint.load(self.target_conn(), self.meta_schema(), self.name,
                                        source)
        return SchemaTracker.from_dict(cp.tracker) if cp and cp.tracker else SchemaTracker()

    async def _structure_from(self, source: str, req: OperateTaskTableStructureRequest,
                              schema: str, table: str) -> str:
        if req.schema_source == "sql":
            if not (req.sql_content or "").strip():
                raise API_ERROR("sql_content must be a CREATE TABLE statement when "
                                "schema_source is sql")
            sql = str(req.sql_content)
            try:
                ddl = parse_create_statement(sql)
            except ValueError as exc:
                raise SCHEMA_INVALID_SQL(sql, cause=str(exc)) from None
            if ddl.table.lower() != table.lower() or ddl.schema.lower() not in ("",
                                                                               schema.lower()):
                given = f"`{ddl.schema}`.`{ddl.table}`" if ddl.schema else f"`{ddl.table}`"
                raise API_ERROR(f"sql_content creates {given}, not `{schema}`.`{table}`")
            return sql
        if req.sql_content:
            raise API_ERROR(f"sql_content is not allowed with schema_source "
                            f"{req.schema_source}")
        if req.schema_source == "upstream":
            conn_cfg, name = await self.source_conn(source), (schema, table)
        else:
            dest = router_for_source(self.task_model(), source).route(schema, table)
            if dest is None:
                raise API_ERROR(f"table `{schema}`.`{table}` is not migrated by this task")
            conn_cfg, name = self.target_conn(), (dest.schema, dest.table)
        async with upstream.open_conn(conn_cfg) as conn:
            return await load_table(conn, *name)

    # --- queries --------------------------------------------------------------------
    async def status(self, sources: list[str] | None,
                     workers: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        chosen = self._select(sources)
        await asyncio.gather(*(r.refresh() for s, r in self.runners.items() if s in chosen))
        for source in chosen:
            st = self.state.subtasks[source]
            runner = self.runners.get(source)
            out.append(_subtask_status(self.name, st, workers.get(source, ""), runner,
                                       self.last_progress.get(source),
                                       UNITS[self.document.get("task_mode", "full")]))
        return out


def _subtask_status(task: str, st: SubtaskState, worker: str, runner: SubtaskRunner | None,
                    last: dict[str, Any] | None, first_unit: str) -> dict[str, Any]:
    status: dict[str, Any] = {"name": task, "source_name": st.source_name,
                              "worker_name": worker, "stage": st.stage,
                              "unit": st.unit or first_unit}
    if st.error_msg:
        status["error_msg"] = st.error_msg
    if runner is not None:
        status.update(runner.progress())
    elif last is not None:  # a stopped runner's figures, not its retry message
        status.update({k: v for k, v in last.items() if k != "error_msg"})
    elif st.unit == "Sync":
        status["sync_status"] = empty_sync_status()
    elif st.chunks is not None or st.total_chunks:
        status.update(_stored_progress(st))
    return status


def _stored_progress(st: SubtaskState) -> dict[str, Any]:
    total = len(st.chunks) if st.chunks is not None else st.total_chunks
    done = total if st.stage == FINISHED else st.finished_chunks
    pct = f"{100.0 * done / total if total else 100.0:.2f} %"
    tables = {(c["schema"], c["table"]) for c in st.chunks or []}
    est = sum(int(c.get("est_rows", 0)) for c in st.chunks or [])
    return {
        "dump_status": {"total_tables": len(tables),
                        "completed_tables": float(len(tables) if done == total else 0),
                        "finished_bytes": float(st.finished_bytes),
                        "finished_rows": float(st.finished_rows),
                        "estimate_total_rows": float(est), "bps": 0, "progress": pct},
        "load_status": {"finished_bytes": st.finished_bytes, "total_bytes": st.finished_bytes,
                        "progress": pct, "meta_binlog": _pos(st), "meta_binlog_gtid":
                        st.binlog_gtid, "bps": 0},
    }


def _pos(st: SubtaskState) -> str:
    return f"({st.binlog_name}, {st.binlog_pos})" if st.binlog_name else ""


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
@with_jitter
@forwards("m", TaskManager, "create", "update", "delete", "start", "start_request", "stop",
          "schema_op", "relocate", "reseal")
class TaskActor:
    """Thin Ray shell over TaskManager; on restart it resumes its running subtasks. Tasks
    arrive typed (`Task`), parsed once where they enter."""

    def __init__(self, name: str, cfg: RuntimeConfig):
        self.m = TaskManager(name, cfg)

    async def get(self) -> dict[str, Any] | None:
        st = await self.m.ready()
        return self.m.plain() if st.exists else None

    async def task_model(self) -> Task:
        await self.m.ready()
        self.m._require()
        return self.m.task_model()

    async def stages(self) -> dict[str, str]:
        st = await self.m.ready()
        return {s: sub.stage for s, sub in st.subtasks.items()}

    async def status(self, sources: list[str] | None,
                     workers: dict[str, str]) -> list[dict[str, Any]]:
        await self.m.ready()
        self.m._require()
        return await self.m.status(sources, workers)

    async def chunk_worker_pids(self) -> list[int]:
        """Processes of the running chunk workers (for operators and failure tests)."""
        refs = [w.pid.remote() for r in self.m.runners.values() for w in r.workers]
        return [int(p) for p in await asyncio.gather(*refs)]

    async def sync_worker_pids(self) -> dict[str, int]:
        """Process of each running sync worker, by source (for operators and tests)."""
        out: dict[str, int] = {}
        for source, r in self.m.runners.items():
            if r.sync_worker is not None:
                with contextlib.suppress(Exception):
                    out[source] = int(await r.sync_worker.pid.remote())
        return out

    async def sync_position(self, source: str) -> BinlogPosition | None:
        """The subtask's sync checkpoint (None before its first sync): what a relay log
        must keep."""
        await self.m.ready()
        if not self.m.state.exists or source not in self.m.state.subtasks:
            return None
        cp = await sync_checkpoint.load(self.m.target_conn(), self.m.meta_schema(), self.m.name,
                                        source)
        return cp.position if cp is not None else None

    async def running_unit(self, source: str) -> str | None:
        await self.m.ready()
        return self.m.running_unit(source)

    async def placements(self) -> dict[str, dict[str, str]]:
        """Worker and Ray node each running subtask's data actors are placed on."""
        await self.m.ready()
        return {s: {"worker": r.worker or "", "node_id": r.node_id or ""}
                for s, r in self.m.runners.items()}

    def pid(self) -> int:
        return os.getpid()


__all__ = ["FINISHED", "PAUSED", "RUNNING", "STOPPED", "TaskActor", "TaskManager"]
