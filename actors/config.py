"""Settings every actor is created with; plain data, so Ray can ship and re-ship it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from storage.eventstore import sqlite_url

NAMESPACE = "dmray"


class RuntimeConfig(BaseModel):
    data_dir: str
    store_url: str
    port: int = 8261
    workers_per_node: int = 2
    heartbeat_interval: float = 1.0
    # A worker whose last heartbeat is older than this is offline (DM uses 10 s).
    heartbeat_timeout: float = 10.0
    # A retryable error (lost connection, deadlock, unreachable server) is retried for
    # this long, shown in the subtask's error_msg meanwhile; then the subtask pauses.
    retry_timeout: float = 300.0
    # Tests only: where mysqlkit.faults crash points are armed ("" = off).
    fault_dir: str = ""

    @classmethod
    def build(cls, data_dir: str | Path, store_url: str | None = None,
              **kw: object) -> RuntimeConfig:
        d = Path(data_dir).expanduser().resolve()
        d.mkdir(parents=True, exist_ok=True)
        return cls.model_validate({"data_dir": str(d),
                                   "store_url": store_url or sqlite_url(d), **kw})


NODE_KEY_LABEL = "dmray-node-key"
# A custom resource marking the nodes that serve the API (`dmray serve`'s own Ray, the head
# in cluster.yaml). When the cluster has it, the API and the control-plane actors stay on
# those nodes, so losing a worker node takes only data-moving actors with it.
API_RESOURCE = "dmray_api"


def control_plane_options() -> dict[str, Any]:
    """Ray options for an API replica or control-plane actor (see API_RESOURCE)."""
    import ray

    if ray.cluster_resources().get(API_RESOURCE):
        return {"resources": {API_RESOURCE: 0.0001}}
    return {}


def node_key(node_id: str | None = None) -> str:
    """Stable name of a Ray node (Ray's node id changes on restart): for this process's own
    node DMRAY_NODE_KEY if set; else the node's `dmray-node-key` label (several nodes on one
    host, as in tests); else its IP."""
    import ray

    here = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    if node_id is None or node_id == here:
        key = os.environ.get("DMRAY_NODE_KEY")
        if key:
            return key
        node_id = here
    if node_id is not None:
        for n in ray.nodes():
            if n.get("NodeID") == node_id:
                labels = n.get("Labels") or {}
                return str(labels.get(NODE_KEY_LABEL) or n.get("NodeManagerAddress"))
    return str(ray.util.get_node_ip_address())
