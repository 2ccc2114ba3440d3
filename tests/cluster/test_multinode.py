"""Failover across Ray nodes: a dmray cluster of a head (API, coordinator) and two worker
nodes with two DM workers each, two sources replicating under write load, one bound to a
worker on each node. Node A is removed (its raylet and every process on it killed): the
coordinator binds its source to a free worker on node B within 10 s, the subtask's sync
worker starts on node B from the checkpoint, and both targets end equal to their sources.

The cluster runs in a subprocess (tests/support/multinode_cluster.py): the session's own
Ray is a single node, and one process cannot hold two Ray instances.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from testbed.ports import free_port
from tests.support.api import q, source_body
from tests.support.compare import wait_until_equal
from tests.support.multinode_cluster import PREFIX
from tests.support.repl_load import ReplScenario, Writer
from tests.support.tasks import incr_body

pytestmark = pytest.mark.mariadb

FAILOVER_LIMIT_S = 10.0  # the coordinator notices and rebinds
RESUME_LIMIT_S = 30.0  # replication is back (synced) on the other node


class Driver:
    """The multi-node cluster subprocess: JSON lines out, commands in."""

    def __init__(self, data_dir: str, log_path: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.log = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.multinode_cluster", "--data-dir", data_dir,
             "--port", str(free_port())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
            start_new_session=True, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, out: IO[str]) -> None:
        for line in out:
            if line.startswith(PREFIX):
                self.lines.put(line[len(PREFIX):])

    def answer(self, timeout: float) -> dict[str, Any]:
        try:
            return dict(json.loads(self.lines.get(timeout=timeout)))
        except queue.Empty:
            raise AssertionError(f"no answer from the cluster in {timeout} s "
                                 f"(exit code {self.proc.poll()})") from None

    def ask(self, command: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer(timeout)

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group of the process we started
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[tuple[Driver, dict[str, Any]]]:
    log_path = str(tmp_path / "cluster.log")
    driver = Driver(tempfile.mkdtemp(prefix="dmray-mn-", dir=tmp_path), log_path)
    try:
        try:
            info = driver.answer(timeout=150)
        except AssertionError:
            with open(log_path, errors="replace") as f:
                raise AssertionError("cluster did not start:\n" + f.read()[-4000:]) from None
        yield driver, info
    finally:
        driver.stop()


def get(api: httpx.Client, path: str, timeout: float = 30.0) -> Any:
    """GET, retried while the API itself fails over (its replica may be on the lost node)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = api.get(path)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"GET {path}: {r.status_code} {r.text}")
        time.sleep(0.3)


def node_of(worker: dict[str, Any]) -> str:
    return str(worker["addr"]).rsplit(":", 1)[0]  # the node key: `dmray-node-key` label


def subtask(api: httpx.Client, task: str) -> dict[str, Any]:
    [st] = get(api, f"/tasks/{q(task)}/status")["data"]
    assert not st.get("error_msg"), st
    return dict(st)


def synced(st: dict[str, Any]) -> bool:
    return bool(st["stage"] == "Running" and st["unit"] == "Sync"
                and st.get("sync_status", {}).get("synced"))


def synced_status(api: httpx.Client, task: str) -> dict[str, Any] | None:
    st = subtask(api, task)
    return st if synced(st) else None


def wait(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_node_loss_moves_replication(cluster: tuple[Driver, dict[str, Any]],
                                     source1: MariaDBServer, source2: MariaDBServer,
                                     target: MariaDBServer) -> None:
    driver, info = cluster
    t_start = time.monotonic()
    tag = uuid.uuid4().hex[:6]
    sides = {"node-a": (source1, f"mna_{tag}"), "node-b": (source2, f"mnb_{tag}")}
    with httpx.Client(base_url=info["url"], timeout=30) as api:
        workers = get(api, "/cluster/workers")["data"]
        by_node: dict[str, list[str]] = {}
        for w in workers:
            by_node.setdefault(node_of(w), []).append(w["name"])
        assert sorted(by_node) == ["node-a", "node-b"] and all(
            len(v) == 2 for v in by_node.values()), workers

        scenarios: dict[str, ReplScenario] = {}
        writers: list[Writer] = []
        try:
            for node, (server, schema) in sides.items():
                sc = scenarios[node] = ReplScenario(server, schema)
                sc.create(target, f"{schema}_copy")
                name = f"mn-{node}"
                r = api.post("/sources", json={**source_body(server, name),
                                               "worker_name": by_node[node][0]})
                assert r.status_code == 201, r.text
                pos = sc.position()
                sc.fill()
                r = api.post("/tasks", json=incr_body(name, target, {name: pos}, schema,
                                                      f"{schema}_copy"))
                assert r.status_code == 201, r.text
                assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
            for node in sides:
                st = wait(lambda n=node: synced_status(api, f"mn-{n}"), 60, f"mn-{node} synced")
                assert st["worker_name"] == by_node[node][0]
                placed = driver.ask(f"placements mn-{node}")[f"mn-{node}"]
                assert placed["node_id"] == info["nodes"][node], placed
            for sc in scenarios.values():
                writers.append(sc.writer(pause=0.02))
                writers[-1].start()
            time.sleep(2.0)

            assert driver.ask("remove node-a", timeout=90) == {"removed": "node-a"}
            t0 = time.monotonic()
            try:
                moved = wait(lambda: (w := subtask(api, "mn-node-a")["worker_name"])
                             in by_node["node-b"] and w, FAILOVER_LIMIT_S + 5, "source rebound")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; status {get(api, '/tasks/mn-node-a/status')}; "
                                     f"workers {get(api, '/cluster/workers')}; "
                                     f"actors {driver.ask('actors')}; nodes {info}") from None
            t_bound = time.monotonic() - t0
            # Resumed: the sync worker runs on node-b and the position advances there (under
            # load `synced` is rarely true; it is checked once the writes stop).
            try:
                wait(lambda: driver.ask("placements mn-node-a").get("mn-node-a") == {
                    "worker": moved, "node_id": info["nodes"]["node-b"]}, RESUME_LIMIT_S,
                     "sync worker placed on node-b")
                t_placed = time.monotonic() - t0
                first = subtask(api, "mn-node-a")["sync_status"]["syncer_binlog"]
                wait(lambda: subtask(api, "mn-node-a")["sync_status"]["syncer_binlog"] not in (
                    first, ""), RESUME_LIMIT_S - t_placed, "replication resumed")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; status {subtask(api, 'mn-node-a')}; "
                                     f"placements {driver.ask('placements mn-node-a')}; "
                                     f"actors {driver.ask('actors')}; nodes {info}") from None
            t_resumed = time.monotonic() - t0
            print(f"\nnode-a removed: mn-node-a rebound to {moved} after {t_bound:.1f} s, "
                  f"its sync worker on node-b after {t_placed:.1f} s, "
                  f"replicating there after {t_resumed:.1f} s")
            assert t_bound <= FAILOVER_LIMIT_S, t_bound
            stages = {w["name"]: w["bound_stage"] for w in get(api, "/cluster/workers")["data"]}
            assert all(stages[w] == "offline" for w in by_node["node-a"]), stages
            assert stages[moved] == "bound"
            time.sleep(2.0)  # writes go on after the move
        finally:
            done = [w.stop() for w in writers]
        assert all(n > 50 for n in done), done
        for node, sc in scenarios.items():
            server, schema = sides[node]
            wait_until_equal(server, target, sc.pairs(f"{schema}_copy"), timeout=60)
            st = wait(lambda n=node: synced_status(api, f"mn-{n}"), 30,
                      f"mn-{node} synced at the end")
            assert node_of({"addr": {w["name"]: w["addr"] for w in get(
                api, "/cluster/workers")["data"]}[st["worker_name"]]}) == "node-b"
        for sc in scenarios.values():
            sc.drop()
        for _, schema in sides.values():
            target.execute(f"DROP DATABASE IF EXISTS `{schema}_copy`")
    print(f"multi-node scenario: {time.monotonic() - t_start:.0f} s after the cluster started")
