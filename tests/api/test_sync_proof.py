"""Proof of incremental replication under a randomized workload: every column type, key
changes, multi-statement transactions and DDL mid-stream, with the sync worker killed at
random moments; plus filters, routing of shards, GTID mode, start_time and keep_meta."""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray

from actors.config import NAMESPACE
from testbed.mariadb import MariaDBServer
from tests.support.api import assert_dm_error, drop_tagged, q, source_body
from tests.support.compare import wait_until_equal
from tests.support.tasks import incr_body, master_pos, rows_of, task_body, wait_stage, wait_synced
from tests.support.workload import Workload


@pytest.fixture
def tag(api: httpx.Client, source1: MariaDBServer, target: MariaDBServer) -> Iterator[str]:
    t = uuid.uuid4().hex[:6]
    yield t
    drop_tagged(api, t, source1, target)


def sync_pid(task: str) -> int | None:
    actor = ray.get_actor(f"task/{task}", namespace=NAMESPACE)
    return ray.get(actor.sync_worker_pids.remote()).get(next(iter(
        ray.get(actor.stages.remote()))))


def test_random_workload_with_ddl_and_kills(api: httpx.Client, tag: str,
                                             source1: MariaDBServer,
                                             target: MariaDBServer) -> None:
    schema, tschema, src, name = f"wl_{tag}", f"wlc_{tag}", f"wsrc-{tag}", f"wl-{tag}"
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    # From before the tables exist: their CREATE TABLEs replicate too.
    pos = master_pos(source1)
    wl = Workload(source1, schema, seed=4242, with_ddl=True, ddl_every=60)
    body = incr_body(name, target, {src: pos}, schema, tschema)
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wl.setup()
    load = wl.run_in_thread(rate=150)
    rng = random.Random(7)
    kills = 0
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and kills < 3:
            time.sleep(rng.uniform(2.0, 5.0))
            pid = sync_pid(name)
            if pid:
                os.kill(pid, signal.SIGKILL)
                kills += 1
    finally:
        ops = load.stop()
    assert kills == 3 and ops > 500, (kills, ops)
    wait_synced(api, name, timeout=120)
    waited = wait_until_equal(source1, target, wl.pairs(tschema), timeout=90)
    assert waited < 90
    [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
    assert st["stage"] == "Running" and not st.get("error_msg")


def test_filters_and_shard_routing(api: httpx.Client, tag: str, source1: MariaDBServer,
                                   target: MariaDBServer) -> None:
    schema, tschema, src, name = f"flt_{tag}", f"fltc_{tag}", f"fsrc-{tag}", f"flt-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    for t in ("shard_1", "shard_2", "keep", "nodel"):
        source1.execute(f"CREATE TABLE `{schema}`.`{t}` (id INT PRIMARY KEY, v VARCHAR(20))")
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    target.execute(f"CREATE DATABASE `{tschema}`")
    target.execute(f"CREATE TABLE `{tschema}`.`merged` (id INT PRIMARY KEY, v VARCHAR(20))")
    for t in ("keep", "nodel"):
        target.execute(f"CREATE TABLE `{tschema}`.`{t}` (id INT PRIMARY KEY, v VARCHAR(20))")
    body = incr_body(name, target, {src: master_pos(source1)}, schema, tschema)
    task = body["task"]
    task["binlog_filter_rule"] = {
        "no-delete": {"ignore_event": ["delete"]},
        "no-index": {"ignore_sql": ["^ALTER TABLE .* ADD INDEX"]},
    }
    task["table_migrate_rule"] = [
        {"source": {"source_name": src, "schema": schema, "table": "shard_*"},
         "target": {"schema": tschema, "table": "merged"}},
        {"source": {"source_name": src, "schema": schema, "table": "nodel"},
         "target": {"schema": tschema}, "binlog_filter_rule": ["no-delete", "no-index"]},
        {"source": {"source_name": src, "schema": schema, "table": "keep"},
         "target": {"schema": tschema}},
    ]
    r = api.post("/tasks", json=body)
    assert r.status_code == 201, r.text
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    source1.execute(f"INSERT INTO `{schema}`.shard_1 VALUES (1, 'a'), (2, 'b')")
    source1.execute(f"INSERT INTO `{schema}`.shard_2 VALUES (3, 'c'), (4, 'd')")
    source1.execute(f"UPDATE `{schema}`.shard_2 SET v = 'dd' WHERE id = 4")
    source1.execute(f"DELETE FROM `{schema}`.shard_1 WHERE id = 2")
    for t in ("keep", "nodel"):
        source1.execute(f"INSERT INTO `{schema}`.`{t}` VALUES (1, 'x'), (2, 'y')")
        source1.execute(f"DELETE FROM `{schema}`.`{t}` WHERE id = 1")
        source1.execute(f"ALTER TABLE `{schema}`.`{t}` ADD COLUMN x INT")
        source1.execute(f"ALTER TABLE `{schema}`.`{t}` ADD INDEX idx_v (v)")
        source1.execute(f"INSERT INTO `{schema}`.`{t}` VALUES (3, 'z', 7)")
    source1.execute(f"CREATE TABLE `{schema}`.`unrelated` (id INT PRIMARY KEY)")
    source1.execute(f"INSERT INTO `{schema}`.`unrelated` VALUES (1)")

    def check() -> None:
        assert rows_of(target, tschema, "merged") == [(1, "a"), (3, "c"), (4, "dd")]
        assert rows_of(target, tschema, "keep") == [(2, "y", None), (3, "z", 7)]
        # The delete was ignored for `nodel`.
        assert rows_of(target, tschema, "nodel") == [(1, "x", None), (2, "y", None),
                                                     (3, "z", 7)]

    wait_synced(api, name, check)
    # ... and so was its ADD INDEX (ignore_sql), but not the one of `keep`.
    indexes = {t: {r[2] for r in target.query(f"SHOW INDEX FROM `{tschema}`.`{t}`")}
               for t in ("keep", "nodel")}
    assert indexes == {"keep": {"PRIMARY", "idx_v"}, "nodel": {"PRIMARY"}}
    assert not target.query("SELECT 1 FROM information_schema.TABLES WHERE "
                            "TABLE_SCHEMA = %s AND TABLE_NAME = 'unrelated'", (tschema,))
    # A filter rule with a bad event name is refused when the task is created.
    body2 = incr_body(f"bad-{tag}", target, {src: master_pos(source1)}, schema, tschema)
    body2["task"]["binlog_filter_rule"] = {"f": {"ignore_event": ["explode"]}}
    body2["task"]["table_migrate_rule"][0]["binlog_filter_rule"] = ["f"]
    r = api.post("/tasks", json=body2)
    assert r.status_code == 400 and "explode" in r.text, r.text


def test_gtid_mode_start_time_and_keep_meta(api: httpx.Client, tag: str,
                                            source1: MariaDBServer,
                                            target: MariaDBServer) -> None:
    schema, tschema = f"gt_{tag}", f"gtc_{tag}"
    src = f"gsrc-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT)")
    target.execute(f"CREATE DATABASE `{tschema}`")
    target.execute(f"CREATE TABLE `{tschema}`.t (id INT PRIMARY KEY, v INT)")
    r = api.post("/sources", json=source_body(source1, src, enable_gtid=True))
    assert r.status_code == 201, r.text
    [(gtid,)] = source1.query("SELECT @@GLOBAL.gtid_binlog_pos")
    source1.execute(f"INSERT INTO `{schema}`.t VALUES (1, 1), (2, 2)")

    # GTID mode: start from a GTID set; the rows after it arrive.
    name = f"gt-{tag}"
    body = task_body(name, target, [src], schema, tschema, mode="incremental")
    body["task"]["source_config"]["source_conf"] = [{"source_name": src,
                                                     "binlog_gtid": str(gtid)}]
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_synced(api, name, lambda: _eq(rows_of(target, tschema, "t"), [(1, 1), (2, 2)]))
    [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
    assert st["sync_status"]["syncer_binlog_gtid"].startswith("0-101-")

    # keep_meta: delete, change the target behind dmray's back, create again: it resumes
    # at its checkpoint and does not replay (the manual change survives).
    assert api.delete(f"/tasks/{q(name)}", params={"force": True,
                                                   "keep_meta": True}).status_code == 204
    target.execute(f"UPDATE `{tschema}`.t SET v = 100 WHERE id = 1")
    source1.execute(f"INSERT INTO `{schema}`.t VALUES (3, 3)")
    body["task"]["source_config"]["source_conf"] = [{"source_name": src}]  # no meta: ckpt
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_synced(api, name, lambda: _eq(rows_of(target, tschema, "t"),
                                       [(1, 100), (2, 2), (3, 3)]))
    # Without keep_meta the checkpoint is gone: no meta, no start_time → 20022.
    assert api.delete(f"/tasks/{q(name)}", params={"force": True}).status_code == 204
    assert api.post("/tasks", json=body).status_code == 201
    assert_dm_error(api.post(f"/tasks/{q(name)}/start", json={}), 20022)

    # start_time: the first transaction at or after it (whole seconds).
    time.sleep(1.1)
    t0 = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 1))
    time.sleep(1.5)
    source1.execute(f"INSERT INTO `{schema}`.t VALUES (4, 4)")
    target.execute(f"DELETE FROM `{tschema}`.t WHERE id = 3")  # before start_time: stays
    r = api.post(f"/tasks/{q(name)}/start", json={"start_time": t0,
                                                  "safe_mode_time_duration": "10s"})
    assert r.status_code == 200, r.text
    wait_synced(api, name, lambda: _eq(rows_of(target, tschema, "t"),
                                       [(1, 100), (2, 2), (4, 4)]))
    assert api.post(f"/tasks/{q(name)}/stop", json={}).status_code == 200
    wait_stage(api, name, "Paused")


def _eq(a: Any, b: Any) -> None:
    assert a == b, (a, b)


def test_target_down_is_retried_and_shown(api: httpx.Client, tag: str,
                                          source1: MariaDBServer) -> None:
    """A target that goes away (here: killed) is a transient error: the subtask stays
    Running, shows the error, and catches up once the target is back."""
    schema, src, name = f"down_{tag}", f"dsrc-{tag}", f"down-{tag}"
    tgt = MariaDBServer(250, name="down-target").start()
    try:
        source1.execute(f"CREATE DATABASE `{schema}`")
        source1.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT)")
        tgt.execute(f"CREATE DATABASE `{schema}`")
        tgt.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT)")
        assert api.post("/sources", json=source_body(source1, src)).status_code == 201
        body = incr_body(name, tgt, {src: master_pos(source1)}, schema, schema)
        assert api.post("/tasks", json=body).status_code == 201
        assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
        source1.execute(f"INSERT INTO `{schema}`.t VALUES (1, 1)")
        wait_synced(api, name, lambda: _eq(rows_of(tgt, schema, "t"), [(1, 1)]))

        tgt.crash()
        source1.execute(f"INSERT INTO `{schema}`.t VALUES (2, 2)")
        deadline = time.monotonic() + 30
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
            if st.get("error_msg"):
                break
            time.sleep(0.3)
        assert st["stage"] == "Running", st
        assert st["error_msg"].startswith("[code="), st
        tgt.restart()
        wait_synced(api, name, lambda: _eq(rows_of(tgt, schema, "t"), [(1, 1), (2, 2)]),
                    timeout=60)
        [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
        assert not st.get("error_msg"), st
    finally:
        api.delete(f"/tasks/{q(name)}", params={"force": True})
        tgt.stop()
