"""Starting the control plane on a Ray cluster, and finding it from a driver script."""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.config import NAMESPACE, RuntimeConfig, control_plane_options, node_key
from actors.coordinator import Coordinator
from actors.remote import COORDINATOR, get_actor, worker_actor_name
from actors.worker import WorkerActor

# How long a worker actor of a rejoining node's slot may take to answer before it counts as
# stranded on a node that is gone (a healthy one answers in milliseconds; a restarting one
# in a second or two).
STRANDED_PROBE_S = 5.0


def start_coordinator(cfg: RuntimeConfig) -> Any:
    """The coordinator, created on first call; later calls (any node) get the same actor.
    It runs on an API node (see API_RESOURCE), else preferably on this one (soft: if the
    node is lost, Ray restarts it on another)."""
    opts: dict[str, Any] = control_plane_options()
    if not opts:
        here = ray.get_runtime_context().get_node_id()
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=here, soft=True)
    handle = Coordinator.options(  # type: ignore[attr-defined]
        name=COORDINATOR, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        **opts,
    ).remote(cfg)
    ray.get(handle.ping.remote())
    return handle


def start_local_workers(coordinator: Any, cfg: RuntimeConfig, count: int | None = None,
                        base_port: int | None = None, node_id: str | None = None) -> list[str]:
    """Start a node's workers (this driver's node unless node_id names another), pinned to
    it. Names come from the coordinator by node key and slot, so a restart on the same node
    brings back the same worker names."""
    key = node_key(node_id)
    node_id = node_id or ray.get_runtime_context().get_node_id()
    port = base_port or cfg.port + 1
    names = []
    for slot in range(1, (count if count is not None else cfg.workers_per_node) + 1):
        # The addr is DM's host:port shape: the node and the worker's slot on it.
        addr = f"{key}:{port + slot - 1}"
        name = ray.get(coordinator.register_worker.remote(key, slot, addr))
        _drop_stranded(worker_actor_name(name))
        WorkerActor.options(  # type: ignore[attr-defined]
            name=worker_actor_name(name), namespace=NAMESPACE, lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        ).remote(name, cfg)
        names.append(name)
    return names


def _drop_stranded(actor_name: str) -> None:
    """A worker actor of this name pinned to a node that is gone (a node that left and
    joined again gets a new Ray node id) can never restart: remove it so that it is
    created again here. One that answers is kept."""
    handle = get_actor(actor_name)
    if handle is None:
        return
    try:
        ray.get(handle.info.remote(), timeout=STRANDED_PROBE_S)
        return
    except Exception:  # not answering: pinned to a dead node, or dead for good
        pass
    ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + 10.0
    while get_actor(actor_name) is not None and time.monotonic() < deadline:
        time.sleep(0.2)  # the name is free once the actor is dead


def register_master(coordinator: Any, port: int) -> str:
    key = node_key()
    return str(ray.get(coordinator.register_master.remote(key, f"{key}:{port}")))


def start_control_plane(cfg: RuntimeConfig) -> Any:
    coordinator = start_coordinator(cfg)
    start_local_workers(coordinator, cfg)
    return coordinator


def connect(address: str = "auto", wait_s: float = 0.0) -> Any:
    """For driver scripts: join the running cluster and return the coordinator handle,
    waiting up to wait_s for it to exist (a worker node may come up before the head's
    `dmray serve` has started it)."""
    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return ray.get_actor(COORDINATOR, namespace=NAMESPACE)
        except ValueError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)
