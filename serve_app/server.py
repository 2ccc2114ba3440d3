"""Starting and stopping a whole dmray server: Ray, control plane, HTTP API."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import signal
import socket
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve.config import HTTPOptions

from actors.bootstrap import register_master, start_control_plane
from actors.config import API_RESOURCE, NAMESPACE, RuntimeConfig, control_plane_options
from serve_app.app import DMApi

log = logging.getLogger("dmray.server")

APP_NAME = "dmray"

# Ray Serve's throughput mode: requests reach the API replica through HAProxy (C) instead
# of the Python proxy actor, which on a 2-core machine halves the latency. These must be
# in the environment of the Ray processes, so they are set before Ray starts; nodes of a
# `ray up` cluster set them in their own environment (see cluster.yaml).
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def set_serve_env() -> None:
    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value)
    # HAProxy's stats and metrics listeners default to fixed ports (8404, 9101): take free
    # ones, so that two servers (or a test's second server) can share one machine.
    # Likewise Serve's fallback proxy (8500, 9500), which HAProxy sends requests to while
    # no replica is routable; it binds with SO_REUSEPORT, so a shared port mixes servers.
    for key in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"):
        if key not in os.environ:
            os.environ[key] = str(free_port())
    # Replicas listen behind HAProxy on ports from a range (default 30000-31000) with
    # SO_REUSEPORT: two servers on one machine would both bind 30000 and the kernel would
    # hand each one the other's requests. Each server gets a block of its own.
    for proto, low, high in (("HTTP", 10000, 15000), ("GRPC", 15000, 20000)):
        if f"RAY_SERVE_DIRECT_INGRESS_MIN_{proto}_PORT" not in os.environ:
            base = _free_block(low, high, 16)
            os.environ[f"RAY_SERVE_DIRECT_INGRESS_MIN_{proto}_PORT"] = str(base)
            os.environ[f"RAY_SERVE_DIRECT_INGRESS_MAX_{proto}_PORT"] = str(base + 16)


# Ports are picked now and bound later, after Ray has started: a port from the kernel's
# ephemeral range (32768-60999) can be taken meanwhile by one of Ray's own sockets, which
# crashed HAProxy at startup ("cannot bind socket"). So every pick comes from below it,
# and a process never hands out one port twice.
_handed_out: set[int] = set()


def free_port() -> int:
    """A free port in 20000-30000, below the kernel's ephemeral range."""
    return _free_block(20000, 30000, 1)


def _free_block(low: int, high: int, size: int) -> int:
    """The first port of `size` consecutive free ports in [low, high), picked at random."""
    for _ in range(200):
        base = random.randrange(low, high - size, size)
        block = range(base, base + size)
        if _handed_out.isdisjoint(block) and all(_bindable(p) for p in block):
            _handed_out.update(block)
            return base
    raise RuntimeError(f"no {size} free consecutive ports in {low}-{high}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to Ray; True when this process started a local instance (and so owns it)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        return False
    set_serve_env()
    # "local" starts a fresh instance even when another cluster runs on this machine.
    ray.init(address="local", namespace=NAMESPACE, include_dashboard=False,
             num_cpus=num_cpus, resources={API_RESOURCE: 1}, log_to_driver=False)
    return True


def start(cfg: RuntimeConfig, host: str = "0.0.0.0") -> Any:
    """Start (or join) the control plane and the API; returns the coordinator handle."""
    coordinator = start_control_plane(cfg)
    serve.start(http_options=HTTPOptions(host=host, port=cfg.port),
                logging_config={"enable_access_log": False, "log_level": "WARNING"})
    serve.run(DMApi.options(ray_actor_options=api_actor_options())  # type: ignore[attr-defined]
              .bind(cfg.port), name=APP_NAME, route_prefix="/")
    register_master(coordinator, cfg.port)
    return coordinator


def api_actor_options() -> dict[str, Any]:
    return {"num_cpus": 0, **control_plane_options()}


def stop(owns_ray: bool) -> None:
    """Leave the cluster. A local Ray this process started goes down with everything on it
    (the log keeps the state); a joined cluster keeps serving, its actors are detached."""
    haproxies = own_haproxies() if owns_ray else []
    ray.shutdown()
    if owns_ray:
        stop_processes(haproxies)
        log.info("local Ray stopped")


def own_haproxies() -> list[int]:
    """Serve's HAProxy processes of this server (found by the stats port set_serve_env gave
    it). Serve starts them in sessions of their own and Ray's shutdown leaves them running."""
    port = os.environ.get("RAY_SERVE_HAPROXY_STATS_PORT")
    if not port:
        return []
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            if not cmd[0].endswith(b"/haproxy") or b"-f" not in cmd:
                continue
            cfg = Path(cmd[cmd.index(b"-f") + 1].decode()).read_text()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        if re.search(rf":{port}\b", cfg):
            pids.append(int(d.name))
    return pids


def stop_processes(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
