"""The relay directory of the cluster core: which workers pull which source's binlog into
relay files, their status, and purging.

Decisions (relay started/stopped on a worker) are cluster events; the relay itself runs in
the worker actor (actors/relay_unit.py), which learns its assignment and reports its
status with every heartbeat.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from actors.remote import call, get_actor, worker_actor_name
from domain.cluster import ClusterState
from errors import API_ERROR, NO_SOURCE_IN_WORKER, WORKER_NOT_EXISTS, DMError
from events.cluster import RelayStarted, RelayStopped
from mysqlkit.position import BinlogPosition, master_position

if TYPE_CHECKING:
    from actors.cluster_core import ClusterCore

log = logging.getLogger("dmray.coordinator")


class RelayDirectory:
    """The relays of the cluster: which worker pulls which source's binlog, the status the
    workers report, purging. A plain object the cluster core holds."""

    def __init__(self, core: ClusterCore) -> None:
        self.core = core
        # Each relay worker's last reported relay status (with its heartbeats).
        self.reports: dict[str, dict[str, Any]] = {}

    @property
    def state(self) -> ClusterState:
        return self.core.state

    def relay_dir(self, source: str, base: str | None) -> str:
        """Each source has its own directory under relay_dir; a relative relay_dir is
        under the server's data dir, and none may lead outside the allowed roots."""
        root = self.core.cfg.inside_roots("relay_dir", base or "./relay_log")
        return str(self.core.cfg.inside_roots("relay_dir", str(root / source)))

    async def enable_relay(self, source: str, req: dict[str, Any]) -> None:
        await self.core.ready()
        async with self.core.name_locks[source]:
            self.core.require_source(source)
            workers = list(req.get("worker_name_list") or [])
            if not workers:
                bound = self.state.bindings.get(source)
                if not bound:
                    raise NO_SOURCE_IN_WORKER()
                workers = [bound]
            for w in workers:
                if w not in self.state.workers:
                    raise WORKER_NOT_EXISTS(w)
                other = self.state.relays.get(w)
                if other and other["source"] != source:
                    raise API_ERROR(f"worker {w} already pulls the relay log of source "
                                    f"{other['source']}")
                if self.state.source_of_worker(w) not in (None, source):
                    raise API_ERROR(f"worker {w} is bound to another source")
            view = await self.core.view(source) or {}
            rc = view.get("relay_config") or {}
            relay_dir = self.relay_dir(source, req.get("relay_dir") or rc.get("relay_dir"))
            name = req.get("relay_binlog_name") or rc.get("relay_binlog_name") or ""
            gtid = req.get("relay_binlog_gtid") or rc.get("relay_binlog_gtid") or ""
            pos = 4
            if not name and not gtid:
                start = await self._relay_start(source)
                name, pos, gtid = start.binlog_name, start.binlog_pos, start.gtid
            new = [w for w in workers if self.state.relays.get(w, {}).get("source") != source]
            async with self.core.lock:
                await self.core.agg.record(*[RelayStarted(
                    source_name=source, worker_name=w, relay_dir=relay_dir,
                    relay_binlog_name=name, relay_binlog_pos=pos, relay_binlog_gtid=gtid)
                    for w in new])
        await self._relay_moved(source)

    async def _relay_start(self, source: str) -> BinlogPosition:
        """Where a new relay starts: the oldest checkpoint of the source's subtasks (they
        will read from the relay), else the source's current end."""
        oldest = await self._oldest_checkpoint(source)
        if oldest is not None:
            return oldest
        conn = (await self.core.tasks.source_conns([source]))[source]
        return await master_position(conn)

    async def _oldest_checkpoint(self,
                                 source: str) -> BinlogPosition | None:
        oldest: BinlogPosition | None = None
        for task in self.state.tasks_of_source(source):
            try:
                cp = await call(self.core.tasks.actor(task).sync_position.remote(source))
            except DMError as err:
                log.warning("task %s: checkpoint unreadable: %s", task, err.message)
                continue
            if cp is not None and cp.binlog_name and (
                    oldest is None or (cp.binlog_name, cp.binlog_pos) <
                    (oldest.binlog_name, oldest.binlog_pos)):
                oldest = cp
        return oldest

    async def disable_relay(self, source: str, req: dict[str, Any]) -> None:
        await self.core.ready()
        async with self.core.name_locks[source]:
            self.core.require_source(source)
            current = self.state.relay_workers(source)
            workers = list(req.get("worker_name_list") or []) or current
            for w in workers:
                if w not in self.state.workers:
                    raise WORKER_NOT_EXISTS(w)
            async with self.core.lock:
                await self.core.agg.record(*[RelayStopped(source_name=source, worker_name=w)
                                        for w in workers if w in current])
        await self._relay_moved(source)

    async def _relay_moved(self, source: str) -> None:
        """Subtasks of the source switch between the relay files and the upstream."""
        await self.core.publish()
        bound = self.state.bindings.get(source, "")
        if bound:
            self.core.spawn(self.core.relocate_tasks(source, bound))

    def relay_dir_of(self, source: str, worker: str) -> str:
        r = self.state.relays.get(worker)
        return str(r["relay_dir"]) if r and r["source"] == source else ""

    async def purge_relay(self, source: str, req: dict[str, Any]) -> None:
        """Delete relay files before relay_binlog_name on every relay worker of the source;
        refused (nothing deleted) when a subtask's checkpoint still needs one of them."""
        await self.core.ready()
        self.core.require_source(source)
        before = str(req.get("relay_binlog_name") or "")
        if not before:
            raise API_ERROR("relay_binlog_name is required to purge relay log files")
        workers = self.state.relay_workers(source)
        if not workers:
            raise API_ERROR(f"source {source} has no relay log enabled")
        oldest = await self._oldest_checkpoint(source)
        for w in workers:
            handle = get_actor(worker_actor_name(w))
            if handle is None:
                raise WORKER_NOT_EXISTS(w)
            await call(handle.purge_relay.remote(before, oldest))

    async def relay_protected(self, source: str) -> str:
        """The oldest binlog file a subtask of the source still needs ("" if none)."""
        oldest = await self._oldest_checkpoint(source)
        return oldest.binlog_name if oldest else ""

    async def relay_report(self, worker: str,
                           status: dict[str, Any] | None) -> dict[str, Any] | None:
        """A worker's heartbeat companion: it reports its relay status and learns the
        relay it must run (None: none)."""
        await self.core.ready()
        if status is not None:
            self.reports[worker] = status
        else:
            self.reports.pop(worker, None)
        r = self.state.relays.get(worker)
        if r is None:
            return None
        source = r["source"]
        view = await self.core.view(source) or {}
        conn = (await self.core.tasks.source_conns([source]))[source]
        return {**r, "conn": conn, "flavor": view.get("flavor") or "mariadb",
                "purge": view.get("purge") or {}}

    def relay_status_list(self, source: str) -> list[dict[str, Any]]:
        """One entry per serving worker: the bound one and each relay worker."""
        bound = self.state.bindings.get(source, "")
        workers = ([bound] if bound else []) + [
            w for w in self.state.relay_workers(source) if w != bound]
        out: list[dict[str, Any]] = []
        for w in workers:
            entry: dict[str, Any] = {"source_name": source, "worker_name": w}
            rep = self.reports.get(w)
            if w in self.state.relays and self.state.relays[w]["source"] == source:
                if rep is not None and rep.get("source") == source:
                    entry["relay_status"] = rep["relay_status"]
                    if rep.get("error_msg"):
                        entry["error_msg"] = rep["error_msg"]
                else:
                    entry["relay_status"] = {
                        "master_binlog": "", "master_binlog_gtid": "",
                        "relay_dir": self.state.relays[w]["relay_dir"],
                        "relay_binlog_gtid": "", "relay_catch_up_master": False,
                        "stage": "Running" if self.core.online(w) else "Paused"}
            out.append(entry)
        return out or [{"source_name": source}]

