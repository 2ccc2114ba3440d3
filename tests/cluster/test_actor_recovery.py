"""Killing any actor (ray.kill, or kill -9 of its process) loses no state: Ray restarts it
and it rebuilds itself from the event log."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import ray

from actors.config import NAMESPACE
from actors.remote import source_actor_name, worker_actor_name
from testbed.mariadb import MariaDBServer
from tests.support.api import q, source_body
from tests.support.fixtures_ray import DMServer

KILLS = ["ray_kill", "sigkill"]


def kill(handle: Any, how: str) -> int:
    """Kill the actor's process; returns the old pid."""
    pid = int(ray.get(handle.pid.remote()))
    if how == "ray_kill":
        ray.kill(handle, no_restart=False)
    else:
        os.kill(pid, signal.SIGKILL)
    return pid


def wait_for(fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # the actor may still be restarting
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"condition not met in {timeout} s (last error: {last!r})")


@pytest.fixture
def two_sources(api: httpx.Client, source1: MariaDBServer,
                source2: MariaDBServer) -> Iterator[httpx.Client]:
    for s in api.get("/sources").json()["data"]:
        api.delete(f"/sources/{q(s['source_name'])}", params={"force": True})
    assert api.post("/sources", json={**source_body(source1, "rec-1"),
                                      "worker_name": "worker1"}).status_code == 201
    assert api.post("/sources", json={**source_body(source2, "rec-2"),
                                      "worker_name": "worker2"}).status_code == 201
    assert api.post("/sources/rec-2/disable").status_code == 200
    yield api
    for s in api.get("/sources").json()["data"]:
        api.delete(f"/sources/{q(s['source_name'])}", params={"force": True})


def snapshot(api: httpx.Client) -> dict[str, Any]:
    return {
        "sources": api.get("/sources", params={"with_status": True}).json(),
        "workers": [(w["name"], w["bound_source_name"])
                    for w in api.get("/cluster/workers").json()["data"]],
        "info": api.get("/cluster/info").json(),
    }


@pytest.mark.parametrize("how", KILLS)
def test_coordinator_restart_keeps_state(two_sources: httpx.Client, dm_server: DMServer,
                                         how: str) -> None:
    api = two_sources
    before = snapshot(api)
    state_before = ray.get(dm_server.coordinator.state.remote())
    old_pid = kill(dm_server.coordinator, how)
    wait_for(lambda: ray.get(dm_server.coordinator.pid.remote(), timeout=5) != old_pid)
    state_after = ray.get(dm_server.coordinator.state.remote())
    assert state_after == state_before
    # Heartbeats reach the new coordinator: workers are online (bound) again.
    wait_for(lambda: all(w["bound_stage"] == "bound"
                         for w in api.get("/cluster/workers").json()["data"]
                         if w["name"] in ("worker1", "worker2")))
    assert snapshot(api) == before


@pytest.mark.parametrize("how", KILLS)
def test_source_actor_restart_keeps_state(two_sources: httpx.Client, how: str) -> None:
    api = two_sources
    before = snapshot(api)
    handle = ray.get_actor(source_actor_name("rec-2"), namespace=NAMESPACE)
    state_before = ray.get(handle.state.remote())
    assert state_before["enabled"] is False and state_before["worker_name"] == "worker2"
    old_pid = kill(handle, how)
    wait_for(lambda: ray.get(handle.pid.remote(), timeout=5) != old_pid)
    assert ray.get(handle.state.remote()) == state_before
    assert snapshot(api) == before
    # And it still works: the decrypted password still opens the upstream.
    assert "mysql" in api.get("/sources/rec-2/schemas").json()


@pytest.mark.parametrize("how", KILLS)
def test_worker_restart_keeps_binding(two_sources: httpx.Client, how: str) -> None:
    api = two_sources
    handle = ray.get_actor(worker_actor_name("worker1"), namespace=NAMESPACE)
    assert ray.get(handle.info.remote())["source"] == "rec-1"
    old_pid = kill(handle, how)
    wait_for(lambda: ray.get(handle.pid.remote(), timeout=5) != old_pid)
    bound_to = api.get("/sources/rec-1/status").json()["data"][0].get("worker_name")
    if bound_to != "worker1":
        # Ray took longer than the heartbeat timeout (3 s here) to bring the worker back,
        # as on a loaded machine: the source failed over, as DM's keepalive has it. Then
        # the source must be served by an online worker again, and the restarted worker
        # know what the coordinator says it serves now.
        def settled() -> bool:
            bound = api.get("/sources/rec-1/status").json()["data"][0].get("worker_name")
            workers = {w["name"]: w for w in api.get("/cluster/workers").json()["data"]}
            mine = ray.get(handle.info.remote(), timeout=5)["source"]
            return bool(bound) and workers[bound]["bound_stage"] == "bound" and \
                mine == workers["worker1"]["bound_source_name"]

        wait_for(settled)
        return
    # The restarted worker learns its source from its first heartbeat answer.
    wait_for(lambda: ray.get(handle.info.remote(), timeout=5)["source"] == "rec-1")
    wait_for(lambda: {w["name"]: w["bound_stage"]
                      for w in api.get("/cluster/workers").json()["data"]}["worker1"] == "bound")
    assert api.get("/sources/rec-1/status").json()["data"][0]["worker_name"] == "worker1"
