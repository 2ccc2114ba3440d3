"""The Python driver API: the operations of the HTTP API, called on the actors directly.

    from actors.client import DMClient
    dm = DMClient.connect()            # ray.init(address="auto") and find the coordinator
    dm.create_source({"source_name": "mysql-01", "host": ..., "port": 3306, ...})
    dm.list_workers()

Every method of the coordinator is available by name; errors arrive as `DMError`, with
the same code and message the HTTP API would answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayTaskError

from actors.bootstrap import connect
from actors.remote import unwrap
from domain.models import Source
from errors import DMError


class DMClient:
    def __init__(self, coordinator: Any, timeout: float = 120.0):
        self._coordinator = coordinator
        self._timeout = timeout

    @classmethod
    def connect(cls, address: str = "auto") -> DMClient:
        return cls(connect(address))

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return ray.get(getattr(self._coordinator, method).remote(*args),
                           timeout=self._timeout)
        except RayTaskError as exc:
            inner = unwrap(exc)
            if isinstance(inner, DMError):
                raise inner from None
            raise

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self._call(method, *args)

    def create_source(self, source: Source | dict[str, Any],
                      worker_name: str | None = None) -> dict[str, Any]:
        body = source.model_dump(exclude_none=True) if isinstance(source, Source) else source
        # The request id makes this create idempotent if Ray has to retry it.
        return dict(self._call("create_source", uuid.uuid4().hex, body, worker_name))
