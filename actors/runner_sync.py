"""The Sync unit of a subtask: incremental replication in a sync worker process (replaced
when lost, resuming from the checkpoint in the target), the first checkpoint an `all`
task writes before it enters Sync, and start_time."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from ray.exceptions import RayActorError

from actors.remote import actor_class, unwrapped
from actors.sync_worker import SyncWorker, build_spec, replica_server_id
from domain.task_models import Task
from errors import API_ERROR
from mysqlkit import upstream
from mysqlkit.binlog.reader import find_start_by_time
from mysqlkit.position import BinlogPosition
from mysqlkit.schema.tracker import SchemaTracker
from mysqlkit.sync import checkpoint as sync_checkpoint

if TYPE_CHECKING:
    from actors.runner import SubtaskRunner

log = logging.getLogger("dmray.runner")

# A sync worker lost more often than this (killed, its node gone) pauses the subtask.
SYNC_LOSSES_ALLOWED = 10
SYNC_LOSS_WINDOW_S = 300.0
# Safe mode after an automatic resume (a moved, replaced or restarted sync worker), as DM
# does for a minute after a resume: the replay from the checkpoint must be idempotent.
RESUME_SAFE_MODE_S = 60.0


class SyncUnit:
    """The Sync unit of one subtask runner."""

    def __init__(self, runner: SubtaskRunner) -> None:
        self.r = runner

    async def seed_checkpoint(self) -> None:
        """`all`: the sync's first checkpoint, at the dump's snapshot with the structures
        the dump read, written before the subtask enters Sync. Its sync worker may start a
        while later; by then the target (a shard merge's table, changed by another shard's
        DDL) or the source may have other structures than the binlog at the snapshot."""
        st = self.r.mgr.state.subtasks[self.r.source]
        task = self.r.mgr.task_model()
        tgt = self.r.mgr.target_conn()
        if await sync_checkpoint.load(tgt, task.meta_schema, task.name,
                                      self.r.source) is not None:
            return
        tracker = SchemaTracker()
        for (schema, table), sql in self.r.dump_structures.items():
            tracker.set_table(schema, table, sql)
        start = BinlogPosition(st.binlog_name, st.binlog_pos, st.binlog_gtid)
        last = BinlogPosition(st.last_binlog_name, st.last_binlog_pos, st.last_binlog_gtid) \
            if st.last_binlog_name else None
        await sync_checkpoint.save(tgt, task.meta_schema, task.name, self.r.source, start,
                                   last, tracker.to_dict())

    async def has_checkpoint(self) -> bool:
        """A sync checkpoint in the target (a task deleted with keep_meta and created
        again): the dump and load are done, as DM decides (IsFreshTask)."""
        task = self.r.mgr.task_model()
        cp = await sync_checkpoint.load(self.r.mgr.target_conn(), task.meta_schema, task.name,
                                        self.r.source)
        if cp is not None:
            log.info("subtask %s/%s: a sync checkpoint is there, going on in Sync",
                     self.r.mgr.name, self.r.source)
        return cp is not None

    async def run(self, all_mode: bool) -> None:
        """Incremental replication in a sync worker process; a lost worker is replaced and
        resumes from the checkpoint in the target."""
        mgr = self.r.mgr
        self.r.unit = "Sync"
        task = mgr.task_model()
        src = await mgr.source_conn(self.r.source)
        tgt = mgr.target_conn()
        view = await mgr.source_view(self.r.source)
        flavor = (await upstream.verify(src)).flavor
        st = mgr.state.subtasks[self.r.source]
        exit_safe: BinlogPosition | None = None
        if all_mode:
            start: BinlogPosition | None = BinlogPosition(st.binlog_name, st.binlog_pos,
                                                          st.binlog_gtid)
            if st.last_binlog_name:
                exit_safe = BinlogPosition(st.last_binlog_name, st.last_binlog_pos,
                                           st.last_binlog_gtid)
        else:
            conf = next(c for c in task.source_config.source_conf
                        if c.source_name == self.r.source)
            start = None
            if conf.binlog_name or conf.binlog_gtid:
                start = BinlogPosition(conf.binlog_name or "", int(conf.binlog_pos or 4),
                                       conf.binlog_gtid or "")
        opts = mgr.start_options.get(self.r.source, {})
        start_time = None if all_mode else opts.get("start_time")
        if start_time is not None:
            # DM: a start_time given on start wins over source_conf's position and over
            # the checkpoint (consumed once: a moved or restarted runner goes on from the
            # checkpoint it leaves).
            start = await self._start_at_time(src, tgt, task, flavor, float(start_time))
            opts["start_time"] = None
        spec = build_spec(task, self.r.source, src, tgt, flavor=flavor,
                          gtid_mode=bool(view.get("enable_gtid")), start=start,
                          start_time=None, exit_safe=exit_safe,
                          safe_mode_seconds=float(opts.get("safe_mode_seconds", 0.0)),
                          cfg=mgr.cfg)
        losses: list[float] = []
        while True:
            opts = await self.r.place()
            if self.r.resumed or losses:
                spec = dataclasses.replace(spec, safe_mode_seconds=max(
                    spec.safe_mode_seconds, RESUME_SAFE_MODE_S))
            spec = dataclasses.replace(spec, relay_dir=self.r.relay_dir,
                                       binlog_type="local" if self.r.relay_dir else "remote")
            self.r.sync_handle = actor_class(SyncWorker).options(**opts).remote(spec)
            try:
                await unwrapped(self.r.sync_handle.run.remote())
                return
            except RayActorError as exc:
                now = time.monotonic()
                losses = [t for t in losses if now - t < SYNC_LOSS_WINDOW_S] + [now]
                if len(losses) > SYNC_LOSSES_ALLOWED:
                    raise API_ERROR(f"sync worker lost {len(losses)} times within "
                                    f"{SYNC_LOSS_WINDOW_S:.0f}s: {type(exc).__name__}") from None
                log.warning("subtask %s/%s: the sync worker was lost, resuming from the "
                            "checkpoint", mgr.name, self.r.source)
                self.r.sync_handle = None
                await asyncio.sleep(0.5)

    async def _start_at_time(self, src: upstream.ConnConfig, tgt: upstream.ConnConfig,
                             task: Task, flavor: str, start_time: float) -> BinlogPosition:
        """The binlog position of `start_time`. A checkpoint already there is moved to it,
        keeping its tracker, and stays in safe mode up to where it was: rows between the
        two positions may be in the target already."""
        found = await asyncio.to_thread(
            find_start_by_time, src, int(start_time),
            server_id=replica_server_id(task.name, self.r.source), flavor=flavor)
        cp = await sync_checkpoint.load(tgt, task.meta_schema, task.name, self.r.source)
        if cp is not None:
            await sync_checkpoint.save(tgt, task.meta_schema, task.name, self.r.source, found,
                                       sync_checkpoint.later(cp.exit_safe, cp.position),
                                       cp.tracker)
        log.info("subtask %s/%s: start_time %s is at %s", task.name, self.r.source,
                 start_time, found)
        return found
