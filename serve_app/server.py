"""Starting and stopping a whole dmray server: Ray, control plane, HTTP API."""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray import serve
from ray.serve.config import HTTPOptions

from actors.bootstrap import register_master, start_control_plane
from actors.config import NAMESPACE, RuntimeConfig
from serve_app.app import DMApi

log = logging.getLogger("dmray.server")

APP_NAME = "dmray"


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to Ray; True when this process started a local instance (and so owns it)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    else:
        # "local" starts a fresh instance even when another cluster runs on this machine.
        ray.init(address="local", namespace=NAMESPACE, include_dashboard=False,
                 num_cpus=num_cpus, log_to_driver=False)
        return True
    return False


def start(cfg: RuntimeConfig, host: str = "0.0.0.0") -> Any:
    """Start (or join) the control plane and the API; returns the coordinator handle."""
    coordinator = start_control_plane(cfg)
    serve.start(http_options=HTTPOptions(host=host, port=cfg.port))
    serve.run(DMApi.bind(cfg.port), name=APP_NAME, route_prefix="/")
    register_master(coordinator, cfg.port)
    return coordinator


def stop(owns_ray: bool) -> None:
    """Leave the cluster. A local Ray this process started goes down with everything on it
    (the log keeps the state); a joined cluster keeps serving, its actors are detached."""
    ray.shutdown()
    if owns_ray:
        log.info("local Ray stopped")
