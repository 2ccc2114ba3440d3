"""The sync worker: one process per replicating subtask, hosting mysqlkit's Syncer.

A process of its own because decoding the binlog is CPU work that must not stall the task
actor's event loop (status, stop), and because killing it is how a subtask is stopped
at once. Owned by its task actor, so it dies with it; the task actor starts a new one
that resumes from the checkpoint in the target.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import ray

from actors.chaos import with_jitter
from actors.config import RuntimeConfig
from domain.task_models import Task
from mysqlkit import upstream
from mysqlkit.binlog.filter import BinlogFilter
from mysqlkit.position import BinlogPosition
from mysqlkit.routing import router_for_source
from mysqlkit.sync.syncer import Syncer, SyncSpec


def replica_server_id(task: str, source: str) -> int:
    """A stable server_id for our binlog connection, unlikely to collide with real servers
    (which are usually small numbers) or with another subtask's."""
    return 0x40000000 + zlib.crc32(f"{task}\x00{source}".encode()) % 0x3FFFFFFF


def build_spec(task: Task, source: str, src: upstream.ConnConfig, tgt: upstream.ConnConfig,
               *, flavor: str, gtid_mode: bool, start: BinlogPosition | None,
               start_time: float | None, exit_safe: BinlogPosition | None,
               safe_mode_seconds: float, cfg: RuntimeConfig | None = None) -> SyncSpec:
    router = router_for_source(task, source)
    conf = task.source_config.incr_migrate_conf
    return SyncSpec(
        task=task.name, source=source, src=src, tgt=tgt, meta=task.meta_schema,
        router=router, bfilter=BinlogFilter(task, router),
        server_id=replica_server_id(task.name, source), flavor=flavor, gtid_mode=gtid_mode,
        repl_threads=conf.repl_threads if conf and conf.repl_threads else 16,
        repl_batch=conf.repl_batch if conf and conf.repl_batch else 100,
        safe_mode=bool(conf and conf.safe_mode), safe_mode_seconds=safe_mode_seconds,
        start=start, start_time=start_time, exit_safe=exit_safe,
        shard_mode=task.shard_mode or "",
        retry_timeout=cfg.retry_timeout if cfg else 300.0,
        fault_dir=cfg.fault_dir if cfg else "",
        peer_routers={c.source_name: router_for_source(task, c.source_name)
                      for c in task.source_config.source_conf if c.source_name != source}
        if task.shard_mode else {})


@ray.remote(num_cpus=0, max_restarts=0)
@with_jitter
class SyncWorker:
    def __init__(self, spec: SyncSpec):
        self.syncer = Syncer(spec)

    async def run(self) -> None:
        """Returns only when the reader ends; raises the DMError that pauses the subtask."""
        await self.syncer.run()

    def status(self) -> dict[str, Any]:
        """The SyncStatus, and the transient error being retried if any."""
        return {"sync_status": self.syncer.status(), "retrying": self.syncer.retrying}

    def tracker(self) -> dict[str, Any]:
        return self.syncer.tracker.to_dict()

    def pid(self) -> int:
        return os.getpid()
