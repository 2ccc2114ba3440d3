"""Failover and transfer on the session's (single-node) Ray: a lost worker's source is bound
to a free worker within 10 s and its subtask goes on there; transfer moves a Sync subtask's
sync worker and refuses a busy worker (46006) or a subtask in Dump/Load (46019).

The workers killed here are extra ones (slots beyond worker1/worker2), so other tests keep
theirs; each test removes what it killed.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import ray

from actors.bootstrap import start_local_workers
from actors.config import NAMESPACE
from actors.remote import task_actor_name, worker_actor_name
from testbed.mariadb import MariaDBServer
from tests.support.api import assert_dm_error, q, source_body
from tests.support.compare import wait_until_equal
from tests.support.fixtures_ray import DMServer
from tests.support.repl_load import ReplScenario, status_of
from tests.support.tasks import incr_body, task_body, wait_synced

FAILOVER_LIMIT_S = 10.0


def workers(api: httpx.Client) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in api.get("/cluster/workers").json()["data"]}


def wait_for(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def fresh_workers(srv: DMServer, api: httpx.Client, n: int) -> list[str]:
    """n workers of slots after worker1/worker2, online and free."""
    names = start_local_workers(srv.coordinator, srv.cfg, count=2 + n)[2:]
    wait_for(lambda: all(workers(api).get(w, {}).get("bound_stage") == "free" for w in names),
             30, f"workers {names} free")
    return names


def task_actor(task: str) -> Any:
    return ray.get_actor(task_actor_name(task), namespace=NAMESPACE)


@dataclass
class Repl:
    api: httpx.Client
    scenario: ReplScenario
    source: str
    task: str
    tschema: str

    def start(self, target: MariaDBServer) -> None:
        pos = self.scenario.position()
        self.scenario.fill()
        body = incr_body(self.task, target, {self.source: pos}, self.scenario.schema,
                         self.tschema)
        r = self.api.post("/tasks", json=body)
        assert r.status_code == 201, r.text
        assert self.api.post(f"/tasks/{q(self.task)}/start", json={}).status_code == 200

    def worker(self) -> str:
        [st] = status_of(self.api, q(self.task))
        assert not st.get("error_msg"), st
        return str(st["worker_name"])


@pytest.fixture
def repl(api: httpx.Client, source1: MariaDBServer, target: MariaDBServer) -> Iterator[Repl]:
    tag = uuid.uuid4().hex[:6]
    sc = ReplScenario(source1, f"fo_{tag}")
    tschema = f"foc_{tag}"
    sc.create(target, tschema)
    yield Repl(api, sc, f"fo-{tag}", f"fo-{tag}", tschema)
    api.delete(f"/tasks/{q(f'fo-{tag}')}", params={"force": True})
    api.delete(f"/sources/{q(f'fo-{tag}')}", params={"force": True})
    sc.drop()
    target.execute(f"DROP DATABASE IF EXISTS `{tschema}`")


def bind_source(api: httpx.Client, server: MariaDBServer, name: str, worker: str) -> None:
    r = api.post("/sources", json={**source_body(server, name), "worker_name": worker})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("how", ["ray_kill", "sigstop"])
def test_lost_worker_source_moves_and_sync_goes_on(repl: Repl, dm_server: DMServer,
                                                    source1: MariaDBServer,
                                                    target: MariaDBServer, how: str) -> None:
    """The worker actor killed for good (ray.kill), or its process hung (SIGSTOP: no
    heartbeats, Ray sees nothing wrong): its source is bound to a free worker within 10 s
    and replication goes on there, equal and without duplicates."""
    api = repl.api
    [lost] = fresh_workers(dm_server, api, 1)
    bind_source(api, source1, repl.source, lost)
    repl.start(target)
    pairs = repl.scenario.pairs(repl.tschema)
    wait_synced(api, repl.task)
    assert repl.worker() == lost
    assert ray.get(task_actor(repl.task).placements.remote())[repl.source]["worker"] == lost
    writer = repl.scenario.writer()
    writer.start()
    handle = ray.get_actor(worker_actor_name(lost), namespace=NAMESPACE)
    pid = int(ray.get(handle.pid.remote()))
    time.sleep(1.0)  # writes flow before the loss
    t0 = time.monotonic()
    if how == "ray_kill":
        ray.kill(handle, no_restart=True)
    else:
        os.kill(pid, signal.SIGSTOP)
    try:
        new = wait_for(lambda: (w := repl.worker()) not in ("", lost) and w,
                       FAILOVER_LIMIT_S + 2, "source rebound")
        took = time.monotonic() - t0
        print(f"\nfailover ({how}): {lost} -> {new} in {took:.1f} s")
        assert took <= FAILOVER_LIMIT_S, took
        w = workers(api)
        assert w[lost]["bound_stage"] == "offline" and w[lost]["bound_source_name"] == ""
        assert w[new]["bound_stage"] == "bound" and w[new]["bound_source_name"] == repl.source
        assert api.get(f"/sources/{q(repl.source)}/status").json()["data"][0][
            "worker_name"] == new
        # The subtask runs on the new worker: its sync worker was placed there.
        wait_for(lambda: ray.get(task_actor(repl.task).placements.remote()).get(
            repl.source, {}).get("worker") == new, 10, "sync worker placed on the new worker")
        time.sleep(1.0)  # and writes go on after the move
    finally:
        if how == "sigstop":
            os.kill(pid, signal.SIGCONT)
    assert writer.stop() > 20
    wait_synced(api, repl.task, lambda: wait_until_equal(source1, target, pairs, timeout=0))
    [st] = status_of(api, q(repl.task))
    assert st["stage"] == "Running" and st["worker_name"] == new
    if how == "ray_kill":
        # Offline now: DELETE removes it (while online it would be 46005).
        r = api.delete(f"/cluster/workers/{lost}")
        assert r.status_code == 204, r.text
        assert lost not in workers(api)
    else:
        # The hung worker heartbeats again: online, free, and its source stays moved.
        wait_for(lambda: workers(api)[lost]["bound_stage"] == "free", 15, "worker back free")
        assert_dm_error(api.delete(f"/cluster/workers/{lost}"), 46005, lost)
        assert repl.worker() == new


def test_worker_process_restart_keeps_binding(repl: Repl, dm_server: DMServer,
                                              source1: MariaDBServer,
                                              target: MariaDBServer) -> None:
    """kill -9 of the worker's process: when Ray restarts it within the heartbeat timeout
    (as in DM, where a worker back within its keepalive keeps its source) nothing moves;
    when later, the source fails over. Either way no row is lost or doubled."""
    api = repl.api
    [w] = fresh_workers(dm_server, api, 1)
    bind_source(api, source1, repl.source, w)
    repl.start(target)
    wait_synced(api, repl.task)
    sync_pid = ray.get(task_actor(repl.task).sync_worker_pids.remote())[repl.source]
    writer = repl.scenario.writer()
    writer.start()
    handle = ray.get_actor(worker_actor_name(w), namespace=NAMESPACE)
    os.kill(int(ray.get(handle.pid.remote())), signal.SIGKILL)
    time.sleep(dm_server.cfg.heartbeat_timeout + 2)
    writer.stop()
    if repl.worker() == w:
        # Back within the heartbeat timeout (3 s here): nothing moved.
        assert workers(api)[w]["bound_stage"] == "bound"
        assert ray.get(task_actor(repl.task).sync_worker_pids.remote())[repl.source] == sync_pid
    else:
        # Ray took longer than that to restart it (a loaded machine): the source failed
        # over, as DM's keepalive has it, and replication goes on from the new worker.
        assert workers(api)[repl.worker()]["bound_stage"] == "bound"
    wait_synced(api, repl.task, lambda: wait_until_equal(
        source1, target, repl.scenario.pairs(repl.tschema), timeout=0))


def test_transfer_moves_sync_worker(repl: Repl, dm_server: DMServer, source1: MariaDBServer,
                                    source2: MariaDBServer, target: MariaDBServer) -> None:
    api = repl.api
    a, b = fresh_workers(dm_server, api, 2)
    bind_source(api, source1, repl.source, a)
    other = f"{repl.source}-busy"
    bind_source(api, source2, other, b)
    try:
        repl.start(target)
        wait_synced(api, repl.task)
        # b serves another source: 46006.
        assert_dm_error(api.post(f"/sources/{q(repl.source)}/transfer", json={"worker_name": b}),
                        46006, b)
        assert api.delete(f"/sources/{q(other)}").status_code == 204
        wait_for(lambda: workers(api)[b]["bound_stage"] == "free", 10, f"{b} free")
        actor = task_actor(repl.task)
        before = ray.get(actor.sync_worker_pids.remote())[repl.source]
        writer = repl.scenario.writer()
        writer.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        r = api.post(f"/sources/{q(repl.source)}/transfer", json={"worker_name": b})
        took = time.monotonic() - t0
        assert r.status_code == 200 and r.content == b"", r.text
        print(f"\ntransfer {a} -> {b}: {took:.2f} s")
        # By the time transfer answers, the subtask runs on b, with a new sync worker.
        [st] = status_of(api, q(repl.task))
        assert st["stage"] == "Running" and st["unit"] == "Sync" and st["worker_name"] == b
        assert ray.get(actor.placements.remote())[repl.source]["worker"] == b
        after = wait_for(lambda: ray.get(actor.sync_worker_pids.remote()).get(repl.source),
                         10, "a sync worker runs")
        assert after != before
        w = workers(api)
        assert w[a]["bound_stage"] == "free" and w[b]["bound_source_name"] == repl.source
        time.sleep(1.0)
        assert writer.stop() > 20
        wait_synced(api, repl.task, lambda: wait_until_equal(
            source1, target, repl.scenario.pairs(repl.tschema), timeout=0))
    finally:
        api.delete(f"/sources/{q(other)}", params={"force": True})


def test_transfer_refused_in_dump_or_load(api: httpx.Client, dm_server: DMServer,
                                          source1: MariaDBServer,
                                          target: MariaDBServer) -> None:
    tag = uuid.uuid4().hex[:6]
    schema, tschema, src, task = f"fx_{tag}", f"fxc_{tag}", f"fx-{tag}", f"fx-{tag}"
    a, b = fresh_workers(dm_server, api, 2)
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, c VARCHAR(200))")
    source1.executemany(f"INSERT INTO `{schema}`.t VALUES (%s, %s)",
                        [(i, "x" * 150) for i in range(1, 60_001)])
    try:
        bind_source(api, source1, src, a)
        assert api.post("/tasks", json=task_body(task, target, [src], schema,
                                                 tschema)).status_code == 201
        assert api.post(f"/tasks/{q(task)}/start", json={}).status_code == 200
        [st] = status_of(api, q(task))
        assert st["stage"] == "Running" and st["unit"] in ("Dump", "Load"), st
        assert_dm_error(api.post(f"/sources/{q(src)}/transfer", json={"worker_name": b}),
                        46019, src, task)
        assert repl_worker(api, src) == a
    finally:
        api.delete(f"/tasks/{q(task)}", params={"force": True})
        api.delete(f"/sources/{q(src)}", params={"force": True})
        source1.execute(f"DROP DATABASE IF EXISTS `{schema}`")
        target.execute(f"DROP DATABASE IF EXISTS `{tschema}`")


def repl_worker(api: httpx.Client, source: str) -> str:
    return str(api.get(f"/sources/{q(source)}/status").json()["data"][0].get("worker_name", ""))
