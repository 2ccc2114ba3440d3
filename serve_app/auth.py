"""The gate every request passes before any route: a token when one is required, and no
state-changing request from another site.

When a token is required: always when the server listens beyond loopback (RuntimeConfig
auth_required), else as soon as any token exists; with none, a loopback server answers as
DM does. What is required comes from the read model the replica follows, so it holds on
every way into the replica (HAProxy, Serve's proxy, the replica's own port).

Cross-site: a browser lets any page send a POST without a preflight (a form, `text/plain`);
its Origin header, or Sec-Fetch-Site, tells such a request from a client's. Clients such as
curl, dmctl or a driver script send neither.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from domain.tokens import accepted, from_authorization
from errors import API_ERROR, AUTH_REQUIRED, CROSS_SITE_REFUSED, DMError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# (required, token id -> digest) as the read model has them now
Policy = Callable[[], Awaitable[tuple[bool, dict[str, str]]]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_READ = frozenset({"authorization", "origin", "host", "sec-fetch-site"})

log = logging.getLogger("dmray.api")


class AuthGate:
    """Pure ASGI middleware (a BaseHTTPMiddleware would cost a task per request)."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Only the few headers the gate reads (this runs for every request).
        headers = {name: v.decode("latin-1") for k, v in scope.get("headers", [])
                   if (name := k.decode("latin-1").lower()) in _READ}
        refusal = await self._refusal(scope["method"], headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, err = refusal
        extra = [(b"www-authenticate", b'Bearer realm="dmray"')] if status == 401 else []
        body = orjson.dumps({"error_msg": str(err), "error_code": err.code})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})

    async def _refusal(self, method: str, headers: dict[str, str]) -> tuple[int, DMError] | None:
        if method not in SAFE_METHODS and _cross_site(headers):
            return 403, CROSS_SITE_REFUSED(
                f"{method} from another site (Origin {headers.get('origin', '?')[:100]!r}) "
                "is refused: the API does not take state-changing requests from web pages")
        try:
            required, digests = await self.policy()
        except Exception as exc:  # the coordinator restarting: refuse, never guess open
            log.warning("auth policy unavailable: %s", type(exc).__name__)
            return 503, API_ERROR("the control plane is not reachable right now, please "
                                  "retry")
        if not required and not digests:
            return None
        token = from_authorization(headers.get("authorization", ""))
        if token is None:
            return 401, AUTH_REQUIRED("authentication required: send the header "
                                      "Authorization: Bearer <token> (dmray token create)")
        if not accepted(token, digests):
            return 401, AUTH_REQUIRED("the token is not valid (unknown or revoked)")
        return None


def _cross_site(headers: dict[str, str]) -> bool:
    if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    host = headers.get("host", "")
    return origin == "null" or urlsplit(origin).netloc.lower() != host.lower()
