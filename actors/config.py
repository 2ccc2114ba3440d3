"""Settings every actor is created with; plain data, so Ray can ship and re-ship it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from domain.paths import PathOutsideRoots, resolve_inside
from errors import API_ERROR
from storage.eventstore import sqlite_url
from storage.secrets import SecretBox, key_file_for

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
    # Directories besides data_dir where a request may name a relay dir or a dump's
    # data_dir (absolute, resolved).
    file_roots: list[str] = []
    # Where the keys that seal secrets are (storage/secrets.py); DMRAY_SECRET_KEY wins.
    secret_key_file: str = ""
    # Every API request needs a token (the server listens beyond loopback); with this off,
    # one is needed once any token exists.
    auth_required: bool = False

    def secret_box(self) -> SecretBox:
        return SecretBox.for_file(self.secret_key_file or key_file_for(self.data_dir))

    def inside_roots(self, kind: str, given: str) -> Path:
        """A directory a request names, resolved (relative: under data_dir); a 400 when it
        leads outside data_dir and file_roots."""
        try:
            return resolve_inside(kind, given, self.data_dir, [self.data_dir, *self.file_roots])
        except PathOutsideRoots as exc:
            raise API_ERROR(str(exc)) from None

    @classmethod
    def build(cls, data_dir: str | Path, store_url: str | None = None,
              file_roots: list[str] | None = None, secret_key_file: str | None = None,
              **kw: object) -> RuntimeConfig:
        d = Path(data_dir).expanduser().resolve()
        d.mkdir(parents=True, exist_ok=True)
        roots = [str(Path(r).expanduser().resolve()) for r in file_roots or []]
        return cls.model_validate({"data_dir": str(d), "file_roots": roots,
                                   "secret_key_file": str(key_file_for(d, secret_key_file)),
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
