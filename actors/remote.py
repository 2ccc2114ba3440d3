"""Small helpers around Ray handles: names, lookups and error unwrapping."""

from __future__ import annotations

from typing import Any

import ray
from ray.exceptions import RayTaskError

from actors.config import NAMESPACE
from errors import DMError

COORDINATOR = "coordinator"


def worker_actor_name(worker: str) -> str:
    return f"worker/{worker}"


def source_actor_name(source: str) -> str:
    return f"source/{source}"


def task_actor_name(task: str) -> str:
    return f"task/{task}"


def unwrap(exc: BaseException) -> BaseException:
    """The DMError an actor raised, instead of Ray's wrapper with its remote traceback."""
    seen = 0
    while isinstance(exc, RayTaskError) and seen < 8:
        cause = exc.cause
        if cause is None:
            break
        exc, seen = cause, seen + 1
    return exc


async def call(ref: Any) -> Any:
    """Await an actor call, re-raising an actor's DMError as itself."""
    try:
        return await ref
    except RayTaskError as exc:
        inner = unwrap(exc)
        if isinstance(inner, DMError):
            raise inner from None
        raise


def get_actor(name: str) -> Any | None:
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def actor_class(cls: Any) -> Any:
    """A Ray actor class as mypy should see it (its `options` is added by the decorator)."""
    return cls


async def unwrapped(ref: Any) -> Any:
    """A chunk worker's DMError as itself (it pauses the subtask with its message)."""
    try:
        return await ref
    except RayTaskError as exc:
        if isinstance(exc.cause, DMError):
            raise exc.cause from None
        raise
