"""How a client (a driver script, `ray status`, `dmray status`) finds the Ray cluster of a
`dmray serve` and gets in. No Ray import here: the environment must be right before Ray
reads it.

- Address: `dmray serve` writes its cluster's GCS address to `<data-dir>/ray_address`
  while it runs (several Ray instances on one machine make Ray's own "auto" ambiguous).
- Authentication: a Ray that `ray.init()` starts uses token authentication by default
  (since Ray 2.5x), with its token in `~/.ray/auth_token`. Only `ray.init(address="auto")`
  picks the token up by itself; `ray status` and a client given an explicit address send
  none unless RAY_AUTH_MODE=token (InvalidAuthToken otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

ADDRESS_FILE = "ray_address"
DEFAULT_DATA_DIR = Path("./dmray-data")


def address_file(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / ADDRESS_FILE


def read_address(data_dir: str | Path) -> str | None:
    """The GCS address a running `dmray serve` wrote to its data dir, or None."""
    try:
        return address_file(data_dir).read_text().strip() or None
    except OSError:
        return None


def write_address(data_dir: str | Path, address: str) -> None:
    path = address_file(data_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(address + "\n")
    tmp.replace(path)


def remove_address(data_dir: str | Path, address: str | None = None) -> None:
    """Remove the file, only if it still holds `address` (a later server may own it)."""
    if address is None or read_address(data_dir) == address:
        address_file(data_dir).unlink(missing_ok=True)


def has_token(env: Mapping[str, str]) -> bool:
    """A Ray token is at hand where Ray looks for one (the variables, the default file)."""
    if env.get("RAY_AUTH_TOKEN"):
        return True
    path = env.get("RAY_AUTH_TOKEN_PATH") or str(Path("~/.ray/auth_token"))
    return Path(path).expanduser().is_file()


def use_token_auth(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set RAY_AUTH_MODE=token in `env` (default: this process's environment) when it is
    unset and a token is at hand, as `ray.init(address="auto")` does; returns `env`."""
    target: MutableMapping[str, str] = os.environ if env is None else env
    if "RAY_AUTH_MODE" not in target and has_token(target):
        target["RAY_AUTH_MODE"] = "token"
    return target


def cluster_address(data_dir: str | Path | None = None,
                    env: Mapping[str, str] | None = None) -> str:
    """Where a client connects: RAY_ADDRESS, else the address the server in `data_dir`
    (default ./dmray-data) wrote, else Ray's "auto"."""
    env = os.environ if env is None else env
    return (env.get("RAY_ADDRESS") or read_address(data_dir or DEFAULT_DATA_DIR)
            or "auto")
