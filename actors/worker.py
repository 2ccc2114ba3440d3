"""Worker actors: DM-worker equivalents (worker1, worker2, …) that heartbeat to the coordinator.

A worker keeps no log of its own: what it serves is a decision of the coordinator, which
it learns from every heartbeat answer, so a restarted worker is back in step within one
heartbeat.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import ray

from actors.config import NAMESPACE, RuntimeConfig
from actors.remote import COORDINATOR

log = logging.getLogger("dmray.worker")


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class WorkerActor:
    def __init__(self, name: str, cfg: RuntimeConfig):
        self.name = name
        self.cfg = cfg
        self.source = ""
        self._stop = threading.Event()
        # A thread, not an asyncio task: __init__ runs again on every restart, and a thread
        # started here needs no method call from outside to resume the heartbeats.
        self._beat = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                      name=f"heartbeat-{name}")
        self._beat.start()

    def _heartbeat_loop(self) -> None:
        coordinator = None
        # The node rides along: the coordinator places the bound source's data actors there.
        node_id = ray.get_runtime_context().get_node_id()
        while not self._stop.wait(self.cfg.heartbeat_interval):
            try:
                if coordinator is None:
                    coordinator = ray.get_actor(COORDINATOR, namespace=NAMESPACE)
                ref: Any = coordinator.heartbeat.remote(self.name, node_id)
                answer: str | None = ray.get(
                    ref, timeout=max(self.cfg.heartbeat_interval * 3, 3.0))
            except Exception as exc:  # the coordinator may be restarting: try again
                log.debug("heartbeat of %s failed: %s", self.name, type(exc).__name__)
                coordinator = None
                continue
            if answer is None:
                log.warning("worker %s was removed from the cluster", self.name)
            elif answer != self.source:
                self.source = answer

    def assign(self, source: str) -> None:
        self.source = source

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def pid(self) -> int:
        return os.getpid()
