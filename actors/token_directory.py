"""The API tokens of the cluster core: created (as digests), listed, revoked.

Each change is a cluster event; the API replicas learn the live digests, and whether a
token is required at all, from the read model they follow, so a revocation takes effect
within the long poll's round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from domain.cluster import ClusterState
from domain.names import check_name
from errors import API_ERROR
from events.cluster import CLUSTER_STREAM, TokenCreated, TokenRevoked
from storage.aggregate import Aggregate
from storage.eventstore import EventStore

if TYPE_CHECKING:
    from actors.cluster_core import ClusterCore

TOKEN_NAME_MAX = 64


class TokenDirectory:
    """A plain object the cluster core holds."""

    def __init__(self, core: ClusterCore) -> None:
        self.core = core

    async def create_token(self, token_id: str, name: str, digest: str) -> dict[str, Any]:
        """Record a token the caller made (domain/tokens.py); idempotent by token id, so a
        retried call records it once."""
        try:
            check_name("token name", name, TOKEN_NAME_MAX)
        except ValueError as exc:
            raise API_ERROR(str(exc)) from None
        if len(digest) != 64 or len(token_id) != 12:
            raise API_ERROR("a token is recorded by its id and SHA-256 digest")
        await self.core.ready()
        async with self.core.lock:
            if token_id not in self.core.state.tokens:
                await self.core.agg.record(TokenCreated(
                    token_id=token_id, name=name, digest=digest,
                    created_at=datetime.now(UTC).isoformat(timespec="seconds")))
        await self.core.publish()
        return self._shown(token_id)

    async def list_tokens(self) -> list[dict[str, Any]]:
        await self.core.ready()
        return [self._shown(t) for t in sorted(self.core.state.tokens)]

    async def revoke_token(self, ref: str) -> list[str]:
        """Revoke the token with this id, or every token with this name; the ids revoked
        (none: nothing matched, which is not an error, so a retry is harmless)."""
        await self.core.ready()
        async with self.core.lock:
            tokens = self.core.state.tokens
            ids = [t for t, info in sorted(tokens.items()) if ref in (t, info.name)]
            if ids:
                await self.core.agg.record(*[TokenRevoked(token_id=t) for t in ids])
        await self.core.publish()
        return ids

    def view(self) -> dict[str, Any]:
        """What the API replicas check requests against."""
        return {"required": self.core.cfg.auth_required,
                "digests": {t: info.digest for t, info in self.core.state.tokens.items()}}

    def _shown(self, token_id: str) -> dict[str, Any]:
        info = self.core.state.tokens[token_id]
        return {"token_id": info.token_id, "name": info.name, "created_at": info.created_at}


async def stored_token_count(store_url: str) -> int:
    """How many live tokens the log holds, read without Ray (before the server starts)."""
    store = EventStore(store_url)
    try:
        state = await Aggregate(store, CLUSTER_STREAM, ClusterState).load()
        return len(state.tokens)
    finally:
        await store.close()
