"""Encryption of secrets at rest (passwords, TLS keys) with Fernet, and where the keys are.

Keys come from DMRAY_SECRET_KEY (one key, or several separated by commas), else from a key
file: one key per line, the first encrypts, every one decrypts (so a rotation can re-seal
at leisure). The file is the one the operator names (`--secret-key-file`,
DMRAY_SECRET_KEY_FILE), else `secret.key` in the data dir where an earlier version made it
there, else one of its own under ~/.config/dmray/keys: outside the data dir, so a copy or a
backup of the event log does not carry the key that opens it. It is created on first use
with mode 0600. Every node of a cluster must see the same keys (env or a shared file).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

ENV_KEY = "DMRAY_SECRET_KEY"
ENV_KEY_FILE = "DMRAY_SECRET_KEY_FILE"
LEGACY_KEY_FILE = "secret.key"


class SecretError(Exception):
    pass


def key_file_for(data_dir: str | Path, given: str | Path | None = None) -> Path:
    """Where the key file of a server with this data dir is (see the module doc)."""
    if given:
        return Path(given).expanduser().resolve()
    env = os.environ.get(ENV_KEY_FILE)
    if env:
        return Path(env).expanduser().resolve()
    data = Path(data_dir).expanduser().resolve()
    legacy = data / LEGACY_KEY_FILE
    if legacy.exists():
        return legacy
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "dmray" / "keys" / f"{hashlib.sha256(str(data).encode()).hexdigest()[:16]}.key"


def read_keys(path: Path) -> list[bytes]:
    """The keys of a key file, created with one new key when it does not exist yet."""
    if not path.exists():
        _create(path, Fernet.generate_key())
    keys = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
    if not keys:
        raise SecretError(f"the key file {path} holds no key")
    return keys


def write_keys(path: Path, keys: list[bytes]) -> None:
    """Replace the key file at once (a reader sees the old file or the new, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\n".join(keys) + b"\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _create(path: Path, key: bytes) -> None:
    # Two processes starting together must not each write a different key, nor read the
    # other's file before its key is in it: write a private (0600) temp file, then link it
    # into place, which fails if another process got there first.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def env_keys() -> list[bytes] | None:
    env = os.environ.get(ENV_KEY)
    return [k.strip().encode() for k in env.split(",") if k.strip()] if env else None


def load_key(data_dir: str | Path) -> bytes:
    """The key that encrypts, for a server with this data dir."""
    return (env_keys() or read_keys(key_file_for(data_dir)))[0]


class SecretBox:
    """Encrypts with the first key, decrypts with any. A box made from a key file reads it
    again when a token does not open (another process rotated the keys meanwhile)."""

    def __init__(self, keys: bytes | list[bytes], source: Path | None = None):
        self.source = source
        self._set(keys if isinstance(keys, list) else [keys])

    def _set(self, keys: list[bytes]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise SecretError(f"invalid secret key (set {ENV_KEY} to a Fernet key)") from exc

    @classmethod
    def for_file(cls, path: str | Path) -> SecretBox:
        env = env_keys()
        if env:
            return cls(env)
        return cls(read_keys(Path(path)), source=Path(path))

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> SecretBox:
        return cls.for_file(key_file_for(data_dir))

    def reload(self) -> None:
        """Read the key file again (after a rotation); a box from the environment stays."""
        if self.source is not None:
            self._set(read_keys(self.source))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode() if plain else ""

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        try:
            return self._open(token)
        except InvalidToken:
            if self.source is not None:
                self.reload()
                try:
                    return self._open(token)
                except InvalidToken:
                    pass
        raise SecretError("cannot decrypt a stored secret: wrong secret key")

    def rotate(self, token: str) -> str:
        """The same secret, encrypted with the first key."""
        return self.encrypt(self.decrypt(token)) if token else ""

    def _open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (ValueError, TypeError):
            raise InvalidToken from None
