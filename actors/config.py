"""Settings every actor is created with; plain data, so Ray can ship and re-ship it."""

from __future__ import annotations

import os
from pathlib import Path

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

    @classmethod
    def build(cls, data_dir: str | Path, store_url: str | None = None,
              **kw: object) -> RuntimeConfig:
        d = Path(data_dir).expanduser().resolve()
        d.mkdir(parents=True, exist_ok=True)
        return cls.model_validate({"data_dir": str(d),
                                   "store_url": store_url or sqlite_url(d), **kw})


def node_key() -> str:
    """Stable name of this node: DMRAY_NODE_KEY, else its IP (Ray's node id changes on restart)."""
    key = os.environ.get("DMRAY_NODE_KEY")
    if key:
        return key
    import ray

    return str(ray.util.get_node_ip_address())
