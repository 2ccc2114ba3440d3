"""Encryption of secrets at rest (passwords, TLS keys) with Fernet.

The key comes from DMRAY_SECRET_KEY, else from `secret.key` in the data dir, created on
first use with mode 0600. Every node of a cluster must see the same key (env or shared
data dir), or sources created elsewhere cannot be decrypted.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

ENV_KEY = "DMRAY_SECRET_KEY"
KEY_FILE = "secret.key"


class SecretError(Exception):
    pass


def load_key(data_dir: str | Path) -> bytes:
    env = os.environ.get(ENV_KEY)
    if env:
        return env.encode()
    path = Path(data_dir) / KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # Two processes starting together must not each write a different key, nor read the
    # other's file before its key is in it: write a private (0600) temp file, then link it
    # into place, which fails if another process got there first.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_FILE}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_bytes().strip()
    finally:
        os.unlink(tmp)
    return key


class SecretBox:
    def __init__(self, key: bytes):
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise SecretError(f"invalid secret key (set {ENV_KEY} to a Fernet key)") from exc

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> SecretBox:
        return cls(load_key(data_dir))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode() if plain else ""

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretError("cannot decrypt a stored secret: wrong secret key") from exc
