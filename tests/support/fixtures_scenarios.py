"""Fixtures of the scenario suite (tests/scenarios): two more source servers, for the task
with four sources, and extra workers beyond worker1/worker2 (one per bound source).

Loaded by tests/scenarios/conftest.py, which imports the fixtures by name (a non-root
conftest may not set `pytest_plugins` when the whole suite is collected).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from testbed.mariadb import MariaDBNotInstalled, MariaDBServer, start_servers
from tests.support.fixtures_ray import DMServer

SOURCE3_SERVER_ID = 103
SOURCE4_SERVER_ID = 104


@pytest.fixture(scope="session")
def extra_sources() -> Iterator[tuple[MariaDBServer, MariaDBServer]]:
    """Two more sources (binlog on, server ids 103 and 104), started together once."""
    try:
        s3, s4 = start_servers([SOURCE3_SERVER_ID, SOURCE4_SERVER_ID],
                               names=["source3", "source4"])
    except MariaDBNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield s3, s4
    finally:
        s3.stop()
        s4.stop()


def _workers(c: httpx.Client) -> dict[str, dict[str, object]]:
    return {w["name"]: w for w in c.get("/cluster/workers").json()["data"]}


def start_spare_workers(srv: DMServer, n: int, timeout: float = 30.0) -> list[str]:
    """n workers in the slots after worker1/worker2 (started once; later calls find the
    same ones), each online and free; as tests/cluster/test_failover.py's fresh_workers."""
    from actors.bootstrap import start_local_workers

    names = start_local_workers(srv.coordinator, srv.cfg, count=2 + n)[2:]
    deadline = time.monotonic() + timeout
    with srv.client() as c:
        while True:
            stages = {w: _workers(c).get(w, {}).get("bound_stage") for w in names}
            if all(st == "free" for st in stages.values()):
                return names
            if time.monotonic() > deadline:
                raise AssertionError(f"spare workers not free within {timeout} s: {stages}")
            time.sleep(0.2)


def remove_workers(srv: DMServer, names: list[str], timeout: float = 30.0) -> None:
    """Stop the workers for good and delete them from the cluster, so that later tests
    find the workers they expect (worker1/worker2, no free spare)."""
    import ray

    from actors.remote import get_actor, worker_actor_name

    for name in names:
        handle = get_actor(worker_actor_name(name))
        if handle is not None:
            ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + timeout
    with srv.client() as c:
        left = list(names)
        while left:
            known = _workers(c)
            for name in list(left):
                if name not in known:
                    left.remove(name)
                elif known[name].get("bound_stage") == "offline":
                    if c.delete(f"/cluster/workers/{name}").status_code in (204, 404):
                        left.remove(name)
            if left and time.monotonic() > deadline:
                raise AssertionError(f"spare workers {left} not removed within {timeout} s")
            time.sleep(0.2)


@pytest.fixture
def spare_workers(dm_server: DMServer) -> Iterator[Callable[[int], list[str]]]:
    """`spare_workers(n)`: n free workers beyond worker1/worker2 (which may be killed);
    removed from the cluster after the test."""
    started: list[str] = []

    def start(n: int) -> list[str]:
        names = start_spare_workers(dm_server, n)
        started.extend(w for w in names if w not in started)
        return names

    yield start
    remove_workers(dm_server, started)
