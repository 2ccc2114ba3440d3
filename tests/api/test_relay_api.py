"""Relay log through the API: enable/disable/purge, relay_status, subtasks reading the
local relay files (binlog_type "local") with the same results as from the upstream."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from tests.support.api import assert_dm_error, q, source_body
from tests.support.tasks import incr_body, master_pos, rows_of, wait_synced


def wait_for(fn: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout} s: {last}")


@pytest.fixture
def relay_setup(api: httpx.Client, source2: MariaDBServer,
                target: MariaDBServer) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    schema, src, name = f"rl_{tag}", f"rsrc-{tag}", f"rl-{tag}"
    source2.execute(f"CREATE DATABASE `{schema}`")
    source2.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
    target.execute(f"CREATE DATABASE `{schema}`")
    target.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
    assert api.post("/sources", json=source_body(source2, src)).status_code == 201
    yield {"schema": schema, "source": src, "task": name}
    api.delete(f"/tasks/{q(name)}", params={"force": True})
    api.post(f"/sources/{q(src)}/relay/disable", json={})
    api.delete(f"/sources/{q(src)}", params={"force": True})
    source2.execute(f"DROP DATABASE IF EXISTS `{schema}`")
    target.execute(f"DROP DATABASE IF EXISTS `{schema}`")


def test_relay_enable_status_local_reading_purge_disable(
        api: httpx.Client, relay_setup: dict[str, str], source2: MariaDBServer,
        target: MariaDBServer) -> None:
    s, src, name = relay_setup["schema"], relay_setup["source"], relay_setup["task"]
    body = incr_body(name, target, {src: master_pos(source2)}, s, s)
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    source2.execute(f"INSERT INTO `{s}`.t VALUES (1, 'remote')")
    [st] = wait_synced(api, name, lambda: _eq(rows_of(target, s, "t"), [(1, "remote")]))
    assert st["sync_status"]["binlog_type"] == "remote"

    assert_dm_error(api.post(f"/sources/{q(src)}/relay/enable",
                             json={"worker_name_list": ["worker404"]}), 46004)
    assert_dm_error(api.post(f"/sources/{q(src)}/relay/purge",
                             json={"relay_binlog_name": "mysql-bin.000001"}), 49001,
                    "no relay log")
    r = api.post(f"/sources/{q(src)}/relay/enable")
    assert r.status_code == 200, r.text
    assert api.get(f"/sources/{q(src)}").json()["relay_config"]["enable_relay"] is True
    assert_dm_error(api.put(f"/sources/{q(src)}", json=source_body(source2, src)), 46025)

    def relay_entry() -> dict[str, Any] | None:
        data = api.get(f"/sources/{q(src)}/status").json()["data"]
        rs = data[0].get("relay_status")
        return data[0] if rs and rs["relay_catch_up_master"] else None

    entry = wait_for(relay_entry, "relay caught up")
    rs = entry["relay_status"]
    assert rs["stage"] == "Running" and rs["master_binlog"].startswith("(mysql-bin.")
    assert rs["relay_dir"].endswith(os.sep + src)
    relay_dir = rs["relay_dir"]
    assert any(f.startswith("mysql-bin.") for f in os.listdir(relay_dir))
    worker = entry["worker_name"]
    workers = {w["name"]: w for w in api.get("/cluster/workers").json()["data"]}
    assert workers[worker]["bound_stage"] == "bound"

    # The subtask now reads the local relay files.
    wait_for(lambda: api.get(f"/tasks/{q(name)}/status").json()["data"][0].get(
        "sync_status", {}).get("binlog_type") == "local", "binlog_type local")
    source2.execute(f"INSERT INTO `{s}`.t VALUES (2, 'local')")
    source2.execute(f"UPDATE `{s}`.t SET v = 'local2' WHERE id = 1")
    [st] = wait_synced(api, name, lambda: _eq(rows_of(target, s, "t"),
                                               [(1, "local2"), (2, "local")]))
    assert st["sync_status"]["binlog_type"] == "local"

    # Purge: never what the subtask still needs.
    source2.execute("FLUSH BINARY LOGS")
    source2.execute(f"INSERT INTO `{s}`.t VALUES (3, 'after flush')")
    [(newest, _pos, *_)] = source2.query("SHOW MASTER STATUS")
    wait_synced(api, name, lambda: _eq(len(rows_of(target, s, "t")), 3))
    files = sorted(f for f in os.listdir(relay_dir) if f.startswith("mysql-bin."))
    assert newest in files and len(files) >= 2
    # Purging the newest file's predecessors is refused until the subtask's checkpoint
    # (flushed about every second) has moved into the newest file.
    wait_for(lambda: target.query(
        f"SELECT binlog_name FROM dm_meta.`{name}_syncer_checkpoint` WHERE is_global = 1"
    )[0][0] == newest, "checkpoint in the newest file")
    beyond = "mysql-bin.999999"
    assert_dm_error(api.post(f"/sources/{q(src)}/relay/purge",
                             json={"relay_binlog_name": beyond}), 30101)
    r = api.post(f"/sources/{q(src)}/relay/purge", json={"relay_binlog_name": newest})
    assert r.status_code == 200, r.text
    left = sorted(f for f in os.listdir(relay_dir) if f.startswith("mysql-bin."))
    assert left[0] == newest, left

    # Disable: back to the upstream, same results.
    assert api.post(f"/sources/{q(src)}/relay/disable", json={}).status_code == 200
    wait_for(lambda: api.get(f"/tasks/{q(name)}/status").json()["data"][0].get(
        "sync_status", {}).get("binlog_type") == "remote", "binlog_type remote")
    assert "relay_status" not in api.get(f"/sources/{q(src)}/status").json()["data"][0]
    source2.execute(f"DELETE FROM `{s}`.t WHERE id = 2")
    wait_synced(api, name, lambda: _eq(rows_of(target, s, "t"),
                                       [(1, "local2"), (3, "after flush")]))


def _eq(a: Any, b: Any) -> None:
    assert a == b, (a, b)


def test_relay_config_on_create_and_with_status(api: httpx.Client, source1: MariaDBServer,
                                                tmp_path: Any) -> None:
    src = f"rcfg-{uuid.uuid4().hex[:6]}"
    relay_root = str(tmp_path / "relays")
    body = source_body(source1, src, relay_config={"enable_relay": True,
                                                   "relay_dir": relay_root})
    r = api.post("/sources", json=body)
    assert r.status_code == 201, r.text
    try:
        assert r.json()["relay_config"]["enable_relay"] is True
        listed = api.get("/sources", params={"enable_relay": True}).json()["data"]
        assert src in [s["source_name"] for s in listed]

        def caught_up() -> dict[str, Any] | None:
            data = api.get("/sources", params={"with_status": True}).json()["data"]
            [mine] = [s for s in data if s["source_name"] == src]
            status = api.get(f"/sources/{q(src)}/status").json()["data"]
            rs = status[0].get("relay_status")
            return mine if rs and rs["relay_catch_up_master"] else None

        mine = wait_for(caught_up, "relay caught up")
        [entry] = mine["status_list"]  # one serving worker: the bound one, relaying
        assert entry["worker_name"] and "relay_status" in entry
        assert entry["relay_status"]["relay_dir"] == os.path.join(relay_root, src)
        assert os.path.isfile(os.path.join(relay_root, src, "relay.meta"))
    finally:
        api.post(f"/sources/{q(src)}/relay/disable", json={})
        api.delete(f"/sources/{q(src)}", params={"force": True})
