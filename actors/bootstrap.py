"""Starting the control plane on a Ray cluster, and finding it from a driver script."""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.config import NAMESPACE, RuntimeConfig, node_key
from actors.coordinator import Coordinator
from actors.remote import COORDINATOR, worker_actor_name
from actors.worker import WorkerActor


def start_coordinator(cfg: RuntimeConfig) -> Any:
    """The coordinator, created on first call; later calls (any node) get the same actor."""
    handle = Coordinator.options(  # type: ignore[attr-defined]
        name=COORDINATOR, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
    ).remote(cfg)
    ray.get(handle.ping.remote())
    return handle


def start_local_workers(coordinator: Any, cfg: RuntimeConfig, count: int | None = None,
                        base_port: int | None = None) -> list[str]:
    """Start this node's workers, pinned to it. Names come from the coordinator by slot,
    so a restart on the same node brings back the same worker names."""
    key = node_key()
    node_id = ray.get_runtime_context().get_node_id()
    port = base_port or cfg.port + 1
    names = []
    for slot in range(1, (count if count is not None else cfg.workers_per_node) + 1):
        # The addr is DM's host:port shape: the node and the worker's slot on it.
        addr = f"{key}:{port + slot - 1}"
        name = ray.get(coordinator.register_worker.remote(key, slot, addr))
        WorkerActor.options(  # type: ignore[attr-defined]
            name=worker_actor_name(name), namespace=NAMESPACE, lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        ).remote(name, cfg)
        names.append(name)
    return names


def register_master(coordinator: Any, port: int) -> str:
    key = node_key()
    return str(ray.get(coordinator.register_master.remote(key, f"{key}:{port}")))


def start_control_plane(cfg: RuntimeConfig) -> Any:
    coordinator = start_coordinator(cfg)
    start_local_workers(coordinator, cfg)
    return coordinator


def connect(address: str = "auto") -> Any:
    """For driver scripts: join the running cluster and return the coordinator handle."""
    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    return ray.get_actor(COORDINATOR, namespace=NAMESPACE)
