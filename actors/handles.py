"""Where the control plane's per-name actors are made: one source actor per source and one
task actor per task, named, detached, placed where the coordinator runs (the API nodes
when marked), created on first use and found again by name afterwards. `opts`: the placement options
(actors.config.control_plane_options, read once by the caller)."""

from __future__ import annotations

from typing import Any

from actors.config import NAMESPACE, RuntimeConfig
from actors.remote import source_actor_name, task_actor_name
from actors.source import SourceActor
from actors.task import TaskActor

__all__ = ["source_actor", "task_actor"]


def source_actor(name: str, cfg: RuntimeConfig, opts: dict[str, Any]) -> Any:
    return SourceActor.options(  # type: ignore[attr-defined]
        name=source_actor_name(name), namespace=NAMESPACE, lifetime="detached",
        get_if_exists=True, **opts,
    ).remote(name, cfg)


def task_actor(name: str, cfg: RuntimeConfig, opts: dict[str, Any]) -> Any:
    return TaskActor.options(  # type: ignore[attr-defined]
        name=task_actor_name(name), namespace=NAMESPACE, lifetime="detached",
        get_if_exists=True, **opts,
    ).remote(name, cfg)
