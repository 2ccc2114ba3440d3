"""API tokens: made where they are asked for (the CLI), kept by the server only as a digest.

A token is `dmr_<id>_<secret>`: the id names it in lists and revocations, the 256-bit
secret makes it unguessable. Being random and that long, a plain SHA-256 of it is as hard
to reverse as a slow password hash would be, and costs a microsecond per request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "dmr"
_TOKEN = re.compile(r"dmr_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class NewToken:
    token_id: str
    token: str  # shown once, never stored
    digest: str


def make_token() -> NewToken:
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(token_id, token, digest_of(token))


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id_of(token: str) -> str | None:
    m = _TOKEN.fullmatch(token)
    return m.group(1) if m else None


def from_authorization(header: str) -> str | None:
    """The token an Authorization header carries: `Bearer <token>`, or HTTP basic with the
    token as the password (any user name), for clients that only speak basic."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def accepted(token: str, digests: dict[str, str]) -> bool:
    """Whether `token` is one of the live tokens (token id -> digest)."""
    token_id = token_id_of(token)
    known = digests.get(token_id) if token_id else None
    return known is not None and hmac.compare_digest(known, digest_of(token))
