"""Starting and stopping a whole dmray server: Ray, control plane, HTTP API."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import ray
from ray import serve
from ray.serve.config import HTTPOptions

from actors.bootstrap import register_master, start_control_plane
from actors.config import NAMESPACE, RuntimeConfig
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
    for key in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
        os.environ.setdefault(key, str(_free_port()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


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
             num_cpus=num_cpus, log_to_driver=False)
    return True


def start(cfg: RuntimeConfig, host: str = "0.0.0.0") -> Any:
    """Start (or join) the control plane and the API; returns the coordinator handle."""
    coordinator = start_control_plane(cfg)
    serve.start(http_options=HTTPOptions(host=host, port=cfg.port),
                logging_config={"enable_access_log": False, "log_level": "WARNING"})
    serve.run(DMApi.bind(cfg.port), name=APP_NAME,  # type: ignore[attr-defined]
              route_prefix="/")
    register_master(coordinator, cfg.port)
    return coordinator


def stop(owns_ray: bool) -> None:
    """Leave the cluster. A local Ray this process started goes down with everything on it
    (the log keeps the state); a joined cluster keeps serving, its actors are detached."""
    ray.shutdown()
    if owns_ray:
        log.info("local Ray stopped")
