"""One subtask's runner: its life cycle (start, cancel, the units in the task mode's order,
retrying retryable errors for retry_timeout), where its data actors run (on the node of
the source's bound worker, following transfers and failover) and the progress it shows.
The units themselves: `runner_full.FullUnits` (Dump and Load, or Load from files) and
`runner_sync.SyncUnit` (Sync). A runner records events only through its host
(`RunnerHost.record`), which serializes them with the task actor's own commands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.config import RuntimeConfig
from actors.deferred_indexes import (
    IndexBuilder,
)
from actors.remote import COORDINATOR, get_actor, worker_actor_name
from actors.runner_full import FullUnits
from actors.runner_sync import SyncUnit
from domain.task import TaskState
from domain.task_models import Task
from errors import API_ERROR, DMError, scrub
from events.base import DomainEvent
from events.task import SubtaskProgress
from mysqlkit import upstream
from mysqlkit.position import BinlogPosition
from mysqlkit.retry import RetryClock, exhausted
from storage.eventstore import WrongExpectedVersion

log = logging.getLogger("dmray.runner")

# While its source has no live worker, a subtask asks again this often.
PLACEMENT_POLL_S = 0.5
# A bound worker that does not answer within this is taken as gone (its node lost).
WORKER_PROBE_S = 2.0


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

    @property
    def document(self) -> dict[str, Any]: ...

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
        self.chunk_workers: list[Any] = []
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
        self.dump_structures: dict[tuple[str, str], str] = {}
        self.started = time.monotonic()
        self.binlog = ""
        self.gtid = ""
        self.position: BinlogPosition | None = None
        self.sync_handle: Any = None
        self.indexes: IndexBuilder | None = None  # the load's deferred-index ALTERs
        self.sync_status: dict[str, Any] | None = None
        self.retrying = ""
        # The worker (and its Ray node) this subtask's data actors run on; None while
        # waiting for one. Work follows the binding: see _place().
        self.worker: str | None = None
        self.node_id: str | None = None
        self.relay_dir = ""  # the bound worker's relay files of the source, if any
        self.placed = asyncio.Event()  # set once placed (or ended): relocate waits for it
        self.full = FullUnits(self)
        self.sync = SyncUnit(self)

    @property
    def workers(self) -> list[Any]:
        return list(self.chunk_workers)

    @property
    def sync_worker(self) -> Any:
        return self.sync_handle

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
        self.kill_workers()

    def kill_workers(self) -> None:
        if self.sync_handle is not None:
            self.chunk_workers.append(self.sync_handle)
            self.sync_handle = None
        for w in self.chunk_workers:
            try:
                ray.kill(w, no_restart=True)
            except Exception:  # already gone
                pass
        self.chunk_workers = []

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
            self.kill_workers()
            if self.indexes is not None:
                self.indexes.cancel()
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
                self.kill_workers()
                if self.indexes is not None:
                    self.indexes.cancel()
                    self.indexes = None
                await asyncio.sleep(delay)

    async def _units(self) -> None:
        mode = self.mgr.document.get("task_mode", "full")
        if mode == "load":
            await self.full.load_files()
        elif mode == "incremental":
            await self.sync.run(all_mode=False)
        elif mode == "all":
            if self.mgr.state.subtasks[self.source].unit != "Sync":
                if not await self.sync.has_checkpoint():
                    await self.full.run()
                    # The snapshot transactions (and the metadata locks they hold on the
                    # source's tables) end with the dump: never held while replicating.
                    self.kill_workers()
                    await self.sync.seed_checkpoint()
                await self.mgr.enter_sync(self.source, self)
            await self.sync.run(all_mode=True)
        else:
            await self.full.run(to_files=mode == "dump")


    # --- placement ------------------------------------------------------------------
    async def place(self) -> dict[str, Any]:
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
        w = self.sync_handle
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

    async def record_progress(self) -> None:
        await self.mgr.record(self, SubtaskProgress(
            source_name=self.source, unit=self.unit, finished_chunks=self.done_chunks,
            total_chunks=self.total_chunks, finished_rows=self.rows, finished_bytes=self.bytes))


def empty_sync_status() -> dict[str, Any]:
    return {"total_events": 0, "total_tps": 0, "recent_tps": 0, "master_binlog": "",
            "master_binlog_gtid": "", "syncer_binlog": "", "syncer_binlog_gtid": "",
            "blocking_ddls": [], "unresolved_groups": [], "synced": False,
            "binlog_type": "remote", "seconds_behind_master": 0, "io_total_bytes": 0,
            "dump_io_total_bytes": 0}


