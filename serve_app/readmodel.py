"""The read model an API replica answers GET requests from, without an actor call.

The replica follows the coordinator's published model with a long poll, so a change made
anywhere reaches it within a few milliseconds. After a write through this replica, the
route refreshes the model before answering, so a client always reads its own writes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.remote import call
from serve_app.deps import coordinator_handle

log = logging.getLogger("dmray.api")


class ReadModel:
    def __init__(self) -> None:
        self._key: list[Any] | None = None
        self._model: dict[str, Any] | None = None
        self._follower: asyncio.Task[None] | None = None

    def _set(self, key: list[Any], model: dict[str, Any]) -> None:
        # Long-poll answers and refreshes can cross: never go back to an older version.
        if (self._key is None or key[0] != self._key[0] or key[1] >= self._key[1]):
            self._key, self._model = key, model

    async def refresh(self) -> dict[str, Any]:
        key, model = await call(coordinator_handle().read_model.remote(None))
        self._set(key, model)
        self._ensure_following()
        assert self._model is not None
        return self._model

    async def current(self) -> dict[str, Any]:
        if self._model is None:
            return await self.refresh()
        self._ensure_following()
        return self._model

    def _ensure_following(self) -> None:
        if self._follower is None or self._follower.done():
            self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            try:
                key, model = await call(coordinator_handle().read_model.remote(self._key))
                self._set(key, model)
            except Exception as exc:  # the coordinator may be restarting
                log.debug("read model poll failed: %s", type(exc).__name__)
                await asyncio.sleep(0.5)


read_model = ReadModel()
