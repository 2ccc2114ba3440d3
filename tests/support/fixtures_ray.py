"""One real local Ray instance per test session, with the dmray server started on it once.

The API listens on a free port (never 8261, which a developer's own server may hold);
heartbeats are fast so that offline workers show up within a few seconds.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from testbed.ports import free_port

RETRY_TIMEOUT_S = 20.0


@dataclass
class DMServer:
    base_url: str
    data_dir: str
    coordinator: Any
    cfg: Any

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=f"{self.base_url}/api/v1", timeout=timeout)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    from actors.config import NAMESPACE
    from serve_app.server import set_serve_env, stop

    set_serve_env()
    ray.init(address="local", namespace=NAMESPACE, num_cpus=2, include_dashboard=False,
             log_to_driver=False)
    try:
        yield
    finally:
        stop(owns_ray=True)


@pytest.fixture(scope="session")
def dm_server(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DMServer]:
    from actors.config import RuntimeConfig
    from serve_app import server

    data_dir = tempfile.mkdtemp(prefix="dmray-test-data-")
    # A short retry bound, so that the error-class tests see a retryable error pause; and
    # crash points (mysqlkit.faults) that tests arm in fault_dir.
    cfg = RuntimeConfig.build(data_dir, port=free_port(), heartbeat_interval=0.5,
                              heartbeat_timeout=3.0, retry_timeout=RETRY_TIMEOUT_S,
                              fault_dir=tempfile.mkdtemp(prefix="dmray-test-faults-"),
                              # tests name dump dirs in their tmp_path
                              file_roots=[str(tmp_path_factory.getbasetemp())])
    coordinator = server.start(cfg, host="127.0.0.1")
    srv = DMServer(f"http://127.0.0.1:{cfg.port}", data_dir, coordinator, cfg)
    _wait_workers_online(srv, 2)
    yield srv


def _wait_workers_online(srv: DMServer, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with srv.client() as c:
        while time.monotonic() < deadline:
            r = c.get("/cluster/workers")
            if r.status_code == 200:
                online = [w for w in r.json()["data"] if w["bound_stage"] != "offline"]
                if len(online) >= count:
                    return
            time.sleep(0.3)
    raise AssertionError(f"{count} workers did not come online in {timeout} s")


@pytest.fixture
def api(dm_server: DMServer) -> Iterator[httpx.Client]:
    with dm_server.client() as c:
        yield c
