"""The cluster core: the cluster stream (workers, masters, the source index, bindings),
liveness and failover, the read model, and the task and relay directories it holds
(actors/task_directory.py, actors/relay_directory.py). Plain objects, no Ray actor: the
coordinator actor (actors/coordinator.py) is a thin shell over them."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import defaultdict
from typing import Any

import ray

from actors.config import RuntimeConfig, control_plane_options
from actors.handles import source_actor
from actors.relay_directory import RelayDirectory
from actors.remote import call, get_actor, worker_actor_name
from actors.task_directory import TaskDirectory
from actors.task_spec import resealed
from actors.token_directory import TokenDirectory
from domain.cluster import ClusterState
from domain.models import ClusterTopology, Source
from errors import (
    INVALID_STAGE,
    MASTER_NOT_EXISTS,
    SOURCE_EXISTS,
    SOURCE_HAS_TASKS,
    SOURCE_NOT_EXISTS,
    SOURCE_UPDATE_REFUSED,
    TRANSFER_NEEDS_SYNC,
    WORKER_NOT_EXISTS,
    WORKER_ONLINE,
)
from events.cluster import (
    CLUSTER_STREAM,
    ClusterInitialized,
    MasterRegistered,
    MasterRemoved,
    SourceAdded,
    SourceBound,
    SourceRemoved,
    SourceUnbound,
    TemplateSet,
    TopologySet,
    WorkerRegistered,
    WorkerRemoved,
)
from storage.aggregate import Aggregate
from storage.eventstore import EventStore

log = logging.getLogger("dmray.coordinator")

OFFLINE, FREE, BOUND, RELAY = "offline", "free", "bound", "relay"
# How long a restarted coordinator waits for a bound worker's first heartbeat.
RESTART_GRACE_S = 30.0


class ClusterCore:
    """The plain object behind the coordinator actor: it owns the cluster stream (workers,
    masters, the source index, bindings) and holds the task and relay directories."""

    def __init__(self, cfg: RuntimeConfig):
        self.cfg = cfg
        self.store = EventStore(cfg.store_url)
        self.agg = Aggregate(self.store, CLUSTER_STREAM, ClusterState)
        self.box = cfg.secret_box()
        self._loaded = False
        self.lock = asyncio.Lock()  # validate → append → apply, one command at a time
        self.name_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Heartbeats are liveness, not decisions: kept in memory, never in the log.
        self.last_seen: dict[str, float] = {}
        # Ray node id of each worker, as its heartbeats tell: where a source's data actors go.
        self.node_of: dict[str, str] = {}
        # Heartbeats start anew with this incarnation: no worker counts as lost before a
        # full heartbeat_timeout has passed, or a restarted coordinator would rebind all.
        self._started = time.monotonic()
        self._monitor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Source and task actors live where the coordinator does (API nodes, if marked).
        self.actor_opts = control_plane_options()
        self.node_key = ""
        # Source views as their actors last answered. Every write to a source goes through
        # here, so the cache stays exact, and a list of sources costs no call per source.
        self._views: dict[str, dict[str, Any]] = {}
        # The read model API replicas follow (see read_model): what GET endpoints answer.
        self._epoch = uuid.uuid4().hex  # a new incarnation restarts the version count
        self._model: dict[str, Any] | None = None
        self._model_version = 0
        self._model_changed = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self.tasks = TaskDirectory(self)
        self.relays = RelayDirectory(self)
        self.tokens = TokenDirectory(self)

    @property
    def state(self) -> ClusterState:
        return self.agg.state

    async def ready(self) -> ClusterState:
        if not self._loaded:
            async with self.lock:
                if not self._loaded:
                    await self.agg.load()
                    if not self.agg.state.cluster_id:
                        await self.agg.record(
                            ClusterInitialized(cluster_id=random.randint(1, 2**53))
                        )
                    self._loaded = True
        if self._publisher is None:
            self._publisher = asyncio.get_running_loop().create_task(self._publish_loop())
        if self._monitor is None:
            self._monitor = asyncio.get_running_loop().create_task(self._monitor_loop())
        return self.agg.state

    # --- read model ---------------------------------------------------------------
    async def build_model(self) -> dict[str, Any]:
        names = sorted(self.state.sources)
        views = await asyncio.gather(*(self.view(n) for n in names))
        sources = {}
        for name, view in zip(names, views, strict=True):
            if view is not None:
                view["task_name_list"] = self.state.tasks_of_source(name)
                view["status_list"] = self.status_list(name)
                sources[name] = view
        return {"workers": self.list_workers(), "sources": sources,
                "auth": self.tokens.view()}

    async def publish(self) -> None:
        """Publish the read model if it changed; wakes every follower's long poll."""
        model = await self.build_model()
        if model != self._model:
            self._model, self._model_version = model, self._model_version + 1
            self._model_changed.set()
            self._model_changed = asyncio.Event()

    async def _publish_loop(self) -> None:
        # Liveness changes with time alone (a heartbeat that stops coming), so look
        # regularly; writes publish at once through `publish()`.
        while True:
            try:
                await self.publish()
            except Exception as exc:  # a source actor restarting; next round retries
                log.debug("publishing the read model failed: %s", type(exc).__name__)
            await asyncio.sleep(0.25)

    async def read_model(self, known: list[Any] | None,
                         wait_s: float = 30.0) -> tuple[list[Any], dict[str, Any]]:
        """Long poll: answer at once when `known` ([epoch, version]) is not the current
        model, else when the model changes or `wait_s` passes."""
        await self.ready()
        if known is None:
            await self.publish()
        elif known == [self._epoch, self._model_version] and self._model is not None:
            changed = self._model_changed
            try:
                await asyncio.wait_for(changed.wait(), wait_s)
            except TimeoutError:
                pass
        if self._model is None:
            await self.publish()
        assert self._model is not None
        return [self._epoch, self._model_version], self._model

    # --- workers ------------------------------------------------------------------
    def online(self, worker: str) -> bool:
        seen = self.last_seen.get(worker)
        return seen is not None and time.monotonic() - seen < self.cfg.heartbeat_timeout

    def relay_source_of(self, worker: str) -> str | None:
        """The source whose relay log this worker pulls (stage `relay` when not bound)."""
        r = self.state.relays.get(worker)
        return str(r["source"]) if r else None

    def stage_of(self, worker: str) -> str:
        if not self.online(worker):
            return OFFLINE
        if self.state.source_of_worker(worker):
            return BOUND
        return RELAY if self.relay_source_of(worker) else FREE

    async def register_worker(self, node_key: str, slot: int, addr: str) -> str:
        await self.ready()
        async with self.lock:
            existing = self.state.worker_for_slot(node_key, slot)
            if existing is not None:
                return existing.name
            name = self.state.next_worker_name()
            await self.agg.record(WorkerRegistered(name=name, node_key=node_key, slot=slot,
                                                   addr=addr))
            return name

    async def heartbeat(self, worker: str, node_id: str | None = None) -> str | None:
        """Mark the worker alive; answer the source it should serve (None: unknown worker)."""
        await self.ready()
        if worker not in self.state.workers:
            return None
        was_online = self.online(worker)
        self.last_seen[worker] = time.monotonic()
        if node_id:
            self.node_of[worker] = node_id
        if not was_online:
            self.spawn(self._bind_unbound())
        return self.state.source_of_worker(worker) or ""

    def placement(self, source: str) -> dict[str, str]:
        """Where the source's data actors run: its bound worker and that worker's Ray node
        ("" while the source has no worker, or its worker is offline)."""
        worker = self.state.bindings.get(source, "")
        node = self.node_of.get(worker, "") if worker and self.online(worker) else ""
        # The relay files of the bound worker, if it pulls them: subtasks read them there.
        return {"worker": worker, "node_id": node,
                "relay_dir": self.relays.relay_dir_of(source, worker) if worker else ""}

    # --- failover -----------------------------------------------------------------
    async def _monitor_loop(self) -> None:
        period = min(self.cfg.heartbeat_interval, 1.0)
        while True:
            await asyncio.sleep(period)
            try:
                await self.check_workers()
            except Exception:  # e.g. the store briefly unreachable: the next round retries
                log.exception("checking the workers failed")

    def _lost(self, worker: str) -> bool:
        seen = self.last_seen.get(worker)
        if seen is None:
            # Not heard from since this coordinator started (a restart of the server, when
            # workers come up after the coordinator): a longer grace before rebinding.
            grace = max(3 * self.cfg.heartbeat_timeout, RESTART_GRACE_S)
            return time.monotonic() - self._started >= grace
        return time.monotonic() - seen >= self.cfg.heartbeat_timeout

    async def check_workers(self) -> None:
        """Unbind the sources of workers that stopped heartbeating and give each a free
        worker (a source with none stays unbound until a worker comes online)."""
        if not any(self._lost(w) for w in self.state.bindings.values()):
            return
        async with self.lock:
            lost = sorted((s, w) for s, w in self.state.bindings.items() if self._lost(w))
            free = self.free_workers()
            moves = [(s, w, free.pop(0) if free else "") for s, w in lost]
            events: list[Any] = []
            for s, old, new in moves:
                events.append(SourceUnbound(source_name=s, worker_name=old))
                if new:
                    events.append(SourceBound(source_name=s, worker_name=new))
            await self.agg.record(*events)
        for s, old, new in moves:
            log.warning("worker %s is offline: source %s %s", old, s,
                        f"moves to {new}" if new else "waits for a free worker")
            await self._tell_source(s, new)
            self.spawn(self.relocate_tasks(s, new))
        await self.publish()

    async def relocate_tasks(self, source: str, worker: str) -> None:
        """Tell each task of the source where it now runs; its runner moves its data actors
        (a subtask that is not running has nothing to move)."""
        relay_dir = self.relays.relay_dir_of(source, worker) if worker else ""
        for task in self.state.tasks_of_source(source):
            try:
                await call(self.tasks.actor(task).relocate.remote(source, worker, relay_dir))
            except Exception:  # the task actor restarting: its runner asks where it runs
                log.warning("task %s: relocating %s to %s failed", task, source, worker,
                            exc_info=True)

    def spawn(self, coro: Any) -> None:
        # Keep a reference: the loop holds only weak ones to tasks.
        t = asyncio.get_running_loop().create_task(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    def list_workers(self) -> list[dict[str, Any]]:
        return [
            {"name": w.name, "addr": w.addr, "bound_stage": self.stage_of(w.name),
             "bound_source_name": self.state.source_of_worker(w.name) or ""}
            for w in sorted(self.state.workers.values(), key=lambda w: _natural(w.name))
        ]

    async def remove_worker(self, worker: str) -> None:
        await self.ready()
        async with self.lock:
            if worker not in self.state.workers:
                raise WORKER_NOT_EXISTS(worker)
            if self.online(worker):
                raise WORKER_ONLINE(worker, self.stage_of(worker))
            source = self.state.source_of_worker(worker)
            events: list[Any] = []
            if source:
                events.append(SourceUnbound(source_name=source, worker_name=worker))
            events.append(WorkerRemoved(name=worker))
            await self.agg.record(*events)
        self.last_seen.pop(worker, None)
        if source:
            await self._tell_source(source, "")
        await self._bind_unbound()

    def free_workers(self) -> list[str]:
        return [w for w in sorted(self.state.workers, key=_natural)
                if self.stage_of(w) == FREE]

    async def _bind_unbound(self) -> None:
        """Give every unbound source a free worker, in name order (DM's scheduler does too)."""
        async with self.lock:
            pairs = list(zip(
                sorted(s for s in self.state.sources if s not in self.state.bindings),
                self.free_workers(), strict=False,
            ))
            await self.agg.record(*[SourceBound(source_name=s, worker_name=w) for s, w in pairs])
        for s, w in pairs:
            await self._tell_source(s, w)
            self.spawn(self.relocate_tasks(s, w))

    # --- masters ------------------------------------------------------------------
    async def register_master(self, node_key: str, addr: str) -> str:
        await self.ready()
        async with self.lock:
            existing = self.state.master_for_node(node_key)
            if existing is not None and existing.addr == addr:
                return existing.name
            name = existing.name if existing else self.state.next_master_name()
            await self.agg.record(MasterRegistered(name=name, node_key=node_key, addr=addr))
            return name

    async def list_masters(self) -> list[dict[str, Any]]:
        await self.ready()
        alive_keys = _alive_node_keys()
        return [
            {"name": m.name, "alive": m.node_key in alive_keys,
             "leader": m.node_key == self.node_key, "addr": m.addr}
            for m in sorted(self.state.masters.values(), key=lambda m: _natural(m.name))
        ]

    async def remove_master(self, name: str) -> None:
        await self.ready()
        async with self.lock:
            if name not in self.state.masters:
                raise MASTER_NOT_EXISTS(name)
            await self.agg.record(MasterRemoved(name=name))

    # --- secrets ------------------------------------------------------------------
    async def key_info(self) -> dict[str, Any]:
        return {"from_env": self.box.source is None, "file": self.cfg.secret_key_file}

    async def reseal(self) -> dict[str, int]:
        """After a key rotation (`dmray secrets rotate`): every stored secret encrypted
        again with the first key of the key file, which every actor reads again."""
        await self.ready()
        self.box.reload()
        async with self.lock:
            names = sorted(self.state.templates)
            await self.agg.record(*[TemplateSet(name=n, task=resealed(
                self.state.templates[n], self.box)) for n in names])
        sources = await asyncio.gather(*(call(self.source_actor(s).reseal.remote())
                                         for s in sorted(self.state.sources)))
        tasks = await asyncio.gather(*(call(self.tasks.actor(t).reseal.remote())
                                       for t in sorted(self.state.tasks)))
        return {"sources": sum(sources), "tasks": sum(tasks), "templates": len(names)}

    # --- cluster info -------------------------------------------------------------
    async def cluster_info(self) -> dict[str, Any]:
        st = await self.ready()
        out: dict[str, Any] = {"cluster_id": st.cluster_id}
        if st.topology is not None:
            out["topology"] = st.topology
        return out

    async def set_topology(self, topology: dict[str, Any]) -> dict[str, Any]:
        topo = ClusterTopology.model_validate(topology).model_dump(exclude_none=True)
        await self.ready()
        async with self.lock:
            if topo != self.state.topology:
                await self.agg.record(TopologySet(topology=topo))
        return await self.cluster_info()

    # --- sources ------------------------------------------------------------------
    def source_actor(self, name: str) -> Any:
        return source_actor(name, self.cfg, self.actor_opts)

    def require_source(self, name: str) -> None:
        if name not in self.state.sources:
            raise SOURCE_NOT_EXISTS(name)

    async def view(self, name: str, refresh: bool = False) -> dict[str, Any] | None:
        if refresh or name not in self._views:
            view = await call(self.source_actor(name).get.remote())
            if view is None:
                self._views.pop(name, None)
                return None
            self._views[name] = view
        out = dict(self._views[name])
        # Relay is on when a worker pulls it (enable/disable decide it, not the config).
        out["relay_config"] = {**(out.get("relay_config") or {}),
                               "enable_relay": bool(self.state.relay_workers(name))}
        return out

    async def _tell_source(self, source: str, worker: str) -> None:
        await call(self.source_actor(source).set_worker.remote(worker))
        if worker:
            handle = get_actor(worker_actor_name(worker))
            if handle is not None:
                handle.assign.remote(source)

    async def create_source(self, request_id: str, source: Source | dict[str, Any],
                            worker_name: str | None = None) -> dict[str, Any]:
        src = source if isinstance(source, Source) else Source.model_validate(source)
        name = src.source_name
        self._check_paths(src)
        await self.ready()
        async with self.name_locks[name]:
            if name in self.state.sources:
                if self.state.sources[name] == request_id:  # a retry of this very create
                    return await self.get_source(name)
                raise SOURCE_EXISTS(name)
            if worker_name:
                self._check_free(worker_name)
            # The source actor verifies the upstream and writes the source's own stream;
            # the name only counts as taken once the cluster index records it below.
            view = await call(self.source_actor(name).create.remote(request_id, src))
            self._views[name] = dict(view)
            async with self.lock:
                worker = worker_name or next(iter(self.free_workers()), "")
                if worker_name:
                    self._check_free(worker_name)
                events: list[Any] = [SourceAdded(source_name=name, request_id=request_id)]
                if worker:
                    events.append(SourceBound(source_name=name, worker_name=worker))
                await self.agg.record(*events)
            if worker:
                await self._tell_source(name, worker)
            log.info("source %s added, bound to %s", name, worker or "no worker")
        if worker and src.relay_config is not None and src.relay_config.enable_relay:
            await self.relays.enable_relay(name, {})
        return await self.view(name) or dict(view)

    def _check_free(self, worker: str) -> None:
        if worker not in self.state.workers:
            raise WORKER_NOT_EXISTS(worker)
        stage = self.stage_of(worker)
        if stage != FREE:
            raise INVALID_STAGE(worker, stage, BOUND)

    async def get_source(self, name: str, with_status: bool = False) -> dict[str, Any]:
        await self.ready()
        self.require_source(name)
        view = await self.view(name)
        if view is None:  # index and stream disagree only mid-create; treat as absent
            raise SOURCE_NOT_EXISTS(name)
        view["task_name_list"] = self.state.tasks_of_source(name)
        if with_status:
            view["status_list"] = self.status_list(name)
        return dict(view)

    async def list_sources(self, with_status: bool = False,
                           enable_relay: bool | None = None) -> list[dict[str, Any]]:
        await self.ready()
        names = sorted(self.state.sources)
        views = await asyncio.gather(*(self.view(n) for n in names))
        out = []
        for name, view in zip(names, views, strict=True):
            if view is None:
                continue
            if enable_relay is not None and bool(
                    view["relay_config"].get("enable_relay")) != enable_relay:
                continue
            view["task_name_list"] = self.state.tasks_of_source(name)
            if with_status:
                view["status_list"] = self.status_list(name)
            out.append(view)
        return out

    def status_list(self, name: str) -> list[dict[str, Any]]:
        return self.relays.relay_status_list(name)

    async def source_status(self, name: str) -> list[dict[str, Any]]:
        await self.ready()
        self.require_source(name)
        return self.status_list(name)

    def _check_paths(self, src: Source) -> None:
        if src.relay_config is not None:  # where its relay would write: checked now
            self.relays.relay_dir(src.source_name, src.relay_config.relay_dir)

    async def update_source(self, source: Source | dict[str, Any]) -> dict[str, Any]:
        src = source if isinstance(source, Source) else Source.model_validate(source)
        self._check_paths(src)
        await self.ready()
        async with self.name_locks[src.source_name]:
            self.require_source(src.source_name)
            current = await self.get_source(src.source_name)
            running = await self.tasks.running_tasks_of_source(src.source_name)
            if current["relay_config"].get("enable_relay") or running:
                raise SOURCE_UPDATE_REFUSED(src.source_name, running)
            self._views[src.source_name] = await call(
                self.source_actor(src.source_name).update.remote(src))
            return await self.get_source(src.source_name)

    async def delete_source(self, name: str, force: bool = False) -> None:
        await self.ready()
        async with self.name_locks[name]:
            self.require_source(name)
            tasks = self.state.tasks_of_source(name)
            if tasks and not force:
                raise SOURCE_HAS_TASKS(name, tasks)
            for task in tasks:  # force: the subtasks go first (whole tasks, with their meta)
                await self.tasks.delete_task(task, force=True, keep_meta=False)
            actor = self.source_actor(name)
            await call(actor.delete.remote())
            self._views.pop(name, None)
            async with self.lock:
                events: list[Any] = []
                worker = self.state.bindings.get(name)
                if worker:
                    events.append(SourceUnbound(source_name=name, worker_name=worker))
                events.append(SourceRemoved(source_name=name))
                await self.agg.record(*events)
            if worker:
                handle = get_actor(worker_actor_name(worker))
                if handle is not None:
                    handle.assign.remote("")
            ray.kill(actor, no_restart=True)
        await self._bind_unbound()

    async def set_source_enabled(self, name: str, enabled: bool) -> None:
        """DM's source enable/disable: disable pauses every running subtask of the source
        and enable resumes its paused ones, so that the task status shows the new stage
        when the call answers. The flag is set first: a task start meanwhile sees the
        source disabled (38058), and a retried call finishes the job."""
        await self.ready()
        async with self.name_locks[name]:
            self.require_source(name)
            await call(self.source_actor(name).set_enabled.remote(enabled))
            await self.view(name, refresh=True)
            if enabled:
                await self.tasks.resume_source_subtasks(name)
            else:
                await self.tasks.pause_source_subtasks(name)

    async def transfer_source(self, name: str, worker: str) -> None:
        """Bind the source to another (free) worker; its running subtasks pause and go on
        from their checkpoints on that worker's node. Only subtasks in Sync may move (a
        dump's snapshot cannot follow it)."""
        await self.ready()
        async with self.name_locks[name]:
            self.require_source(name)
            if worker not in self.state.workers:
                raise WORKER_NOT_EXISTS(worker)
            current = self.state.bindings.get(name)
            if current == worker:
                return  # already there: a retried transfer is a no-op
            self._check_free(worker)
            for task in self.state.tasks_of_source(name):
                unit = await call(self.tasks.actor(task).running_unit.remote(name))
                if unit is not None and unit != "Sync":
                    raise TRANSFER_NEEDS_SYNC(name, task)
            async with self.lock:
                self._check_free(worker)
                events: list[Any] = []
                if current:
                    events.append(SourceUnbound(source_name=name, worker_name=current))
                events.append(SourceBound(source_name=name, worker_name=worker))
                await self.agg.record(*events)
            if current:
                handle = get_actor(worker_actor_name(current))
                if handle is not None:
                    handle.assign.remote("")
            await self._tell_source(name, worker)
            # Answer once the subtasks run on the new worker (DM: pause, rebind, resume).
            await self.relocate_tasks(name, worker)

    async def source_schemas(self, name: str) -> list[str]:
        await self.ready()
        self.require_source(name)
        return list(await call(self.source_actor(name).schemas.remote()))

    async def source_tables(self, name: str, schema: str) -> list[str]:
        await self.ready()
        self.require_source(name)
        return list(await call(self.source_actor(name).tables.remote(schema)))


def _natural(name: str) -> tuple[str, int]:
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return head, int(tail) if tail else 0


def _alive_node_keys() -> set[str]:
    keys = set()
    for n in ray.nodes():
        if n.get("Alive"):
            keys.add(n.get("NodeManagerAddress", ""))
            labels = n.get("Labels") or {}
            if "dmray-node-key" in labels:
                keys.add(labels["dmray-node-key"])
    return keys


