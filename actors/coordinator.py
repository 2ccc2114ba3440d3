"""The coordinator actor: the one entry point for operations on the cluster, its sources
and its tasks, used alike by the HTTP API and by driver scripts
(`ray.get(coordinator.list_sources.remote())`). A thin shell: the operations are those of
the cluster core and the directories it holds (actors/cluster_core.py), generated as
actor methods (actors/forwarding.py); only what the shell adds is written here.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from actors.chaos import with_jitter
from actors.cluster_core import ClusterCore
from actors.config import RuntimeConfig
from actors.forwarding import forwards
from actors.relay_directory import RelayDirectory
from actors.task_directory import TaskDirectory
from actors.token_directory import TokenDirectory

CLUSTER_OPS = (
    "register_worker", "heartbeat", "remove_worker", "register_master", "list_masters",
    "remove_master", "cluster_info", "set_topology", "read_model", "key_info", "reseal",
    "create_source", "get_source", "list_sources", "update_source", "delete_source",
    "source_status", "transfer_source", "source_schemas", "source_tables",
)
TASK_OPS = (
    "create_task", "update_task", "delete_task", "get_task", "list_tasks", "task_status",
    "start_task", "stop_task", "task_schema", "task_migrate_targets",
    "create_template", "list_templates", "get_template", "update_template",
    "delete_template", "import_templates",
)
RELAY_OPS = ("enable_relay", "disable_relay", "purge_relay", "relay_report",
             "relay_protected")


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
@with_jitter  # test-only delays (DMRAY_CHAOS_JITTER_MS); the class itself when unset
@forwards("core", ClusterCore, *CLUSTER_OPS)
@forwards("core.tasks", TaskDirectory, *TASK_OPS)
@forwards("core.relays", RelayDirectory, *RELAY_OPS)
@forwards("core.tokens", TokenDirectory, "create_token", "list_tokens", "revoke_token")
class Coordinator:
    """Named, detached actor; every method is an operation of the driver API."""

    def __init__(self, cfg: RuntimeConfig):
        self.core = ClusterCore(cfg)
        from actors.config import node_key

        self.core.node_key = node_key()

    async def ping(self) -> dict[str, Any]:
        st = await self.core.ready()
        return {"pid": os.getpid(), "version": self.core.agg.version,
                "cluster_id": st.cluster_id}

    def pid(self) -> int:
        return os.getpid()

    def config(self) -> RuntimeConfig:
        return self.core.cfg

    async def placement(self, source: str) -> dict[str, str]:
        await self.core.ready()
        return self.core.placement(source)

    async def list_workers(self) -> list[dict[str, Any]]:
        await self.core.ready()
        return self.core.list_workers()

    async def enable_source(self, name: str) -> None:
        await self.core.set_source_enabled(name, True)

    async def disable_source(self, name: str) -> None:
        await self.core.set_source_enabled(name, False)

    async def state(self) -> dict[str, Any]:
        st = await self.core.ready()
        return {"version": self.core.agg.version, **st.model_dump()}
