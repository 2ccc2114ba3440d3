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

from actors.chaos import with_jitter
from actors.config import NAMESPACE, RuntimeConfig
from actors.relay_unit import RelayUnit
from actors.remote import COORDINATOR
from errors import API_ERROR
from mysqlkit.position import BinlogPosition

log = logging.getLogger("dmray.worker")


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
@with_jitter  # test-only delays (DMRAY_CHAOS_JITTER_MS); the class itself when unset
class WorkerActor:
    def __init__(self, name: str, cfg: RuntimeConfig):
        self.name = name
        self.cfg = cfg
        self.source = ""
        self.relay: RelayUnit | None = None
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
            self._sync_relay(coordinator)

    def _sync_relay(self, coordinator: Any) -> None:
        """Report the relay's status; start, keep or stop it as the coordinator decides."""
        unit = self.relay
        try:
            spec: dict[str, Any] | None = ray.get(coordinator.relay_report.remote(
                self.name, unit.status() if unit is not None else None),
                timeout=max(self.cfg.heartbeat_interval * 3, 3.0))
        except Exception as exc:  # next heartbeat tries again
            log.debug("relay report of %s failed: %s", self.name, type(exc).__name__)
            return
        if unit is not None and (spec is None or not unit.same(spec)):
            log.info("worker %s: relay of %s stops", self.name, unit.source)
            unit.close()
            self.relay = unit = None
        if spec is not None and unit is None:
            source = spec["source"]
            spec["protected_fn"] = lambda: ray.get(
                coordinator.relay_protected.remote(source), timeout=30)
            log.info("worker %s: relay of %s starts in %s", self.name, source,
                     spec["relay_dir"])
            self.relay = RelayUnit(self.name, spec).start()

    def purge_relay(self, before: str, protected: BinlogPosition | None) -> list[str]:
        if self.relay is None:
            raise API_ERROR(f"worker {self.name} pulls no relay log")
        return self.relay.purge_before(before, protected)

    def assign(self, source: str) -> None:
        self.source = source

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def pid(self) -> int:
        return os.getpid()
