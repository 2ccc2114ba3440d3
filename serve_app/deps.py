"""Request dependencies: the coordinator handle, looked up once per replica."""

from __future__ import annotations

from typing import Annotated, Any

import ray
from fastapi import Depends

from actors.config import NAMESPACE
from actors.remote import COORDINATOR

_handle: Any = None


def coordinator_handle() -> Any:
    global _handle
    if _handle is None:
        _handle = ray.get_actor(COORDINATOR, namespace=NAMESPACE)
    return _handle


async def get_coordinator() -> Any:
    # async: FastAPI runs a plain-def dependency in a thread pool, a thread hop per request.
    return coordinator_handle()


CoordinatorDep = Annotated[Any, Depends(get_coordinator)]
