"""/tasks against real MariaDB sources and target, through the real Ray Serve API: life
cycle, full migration end to end, stop/start and actor kills mid-load."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import ray

from actors.config import NAMESPACE
from testbed.mariadb import MariaDBServer
from tests.support.api import assert_dm_error, q, source_body
from tests.support.tasks import (
    loading,
    table_digest,
    task_body,
    wait_stage,
)


@pytest.fixture
def shop(api: httpx.Client, source1: MariaDBServer,
         target: MariaDBServer) -> Iterator[dict[str, str]]:
    """A source schema with a few tables, a registered source, a fresh target schema."""
    tag = uuid.uuid4().hex[:6]
    schema, tschema, src = f"shop_{tag}", f"copy_{tag}", f"src-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    for t, n in (("orders", 3000), ("items", 500)):
        source1.execute(f"CREATE TABLE `{schema}`.`{t}` (id INT PRIMARY KEY, k INT NOT NULL, "
                        "c VARCHAR(64), b VARBINARY(16))")
        source1.executemany(f"INSERT INTO `{schema}`.`{t}` VALUES (%s, %s, %s, %s)",
                            [(i, i * 7 % 1000, f"row-{i}-ë😀", bytes([i % 256, 0, 255]))
                             for i in range(1, n + 1)])
    source1.execute(f"CREATE TABLE `{schema}`.`nopk` (k INT, c VARCHAR(10))")
    source1.execute(f"INSERT INTO `{schema}`.`nopk` VALUES (1, 'a'), (1, 'a'), (2, NULL)")
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    yield {"schema": schema, "tschema": tschema, "source": src}
    for t in api.get("/tasks").json()["data"]:
        api.delete(f"/tasks/{q(t['name'])}", params={"force": True})
    api.delete(f"/sources/{q(src)}", params={"force": True})
    source1.execute(f"DROP DATABASE IF EXISTS `{schema}`")
    target.execute(f"DROP DATABASE IF EXISTS `{tschema}`")


def test_full_migration_end_to_end(api: httpx.Client, shop: dict[str, str],
                                   source1: MariaDBServer, target: MariaDBServer) -> None:
    name = f"full-{shop['source']}"
    body = task_body(name, target, [shop["source"]], shop["schema"], shop["tschema"])
    r = api.post("/tasks", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["task"]["name"] == name
    assert "check_result" in created
    assert created["task"]["target_config"]["password"] == "******"
    assert target.password not in r.text

    [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
    assert st["stage"] == "Stopped" and st["source_name"] == shop["source"]

    # GET then PUT of the same body round-trips.
    got = api.get(f"/tasks/{q(name)}").json()
    r = api.put(f"/tasks/{q(name)}", json={"task": got})
    assert r.status_code == 200, r.text
    assert api.get(f"/tasks/{q(name)}").json() == got

    assert api.post(f"/tasks/{q(name)}/start").status_code == 200  # no body: all sources
    [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
    assert st["stage"] in ("Running", "Finished")
    [st] = wait_stage(api, name, "Finished")
    assert st["unit"] == "Load"
    assert st["load_status"]["progress"] == "100.00 %"
    assert st["dump_status"]["total_tables"] == 3
    for t in ("orders", "items"):
        assert table_digest(target, shop["tschema"], t) == table_digest(
            source1, shop["schema"], t)
    assert sorted(target.query(f"SELECT k, c FROM `{shop['tschema']}`.nopk"),
                  key=repr) == sorted(source1.query(f"SELECT k, c FROM `{shop['schema']}`.nopk"),
                                      key=repr)
    # Checkpoints live in the meta schema; delete without keep_meta drops them.
    ckpt = f"{name}_loader_checkpoint"
    assert target.query("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA='dm_meta' AND TABLE_NAME=%s", (ckpt,))[0][0] == 1
    assert api.delete(f"/tasks/{q(name)}").status_code == 204
    assert target.query("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA='dm_meta' AND TABLE_NAME=%s", (ckpt,))[0][0] == 0
    assert_dm_error(api.get(f"/tasks/{q(name)}"), 46018, name)


def test_task_errors(api: httpx.Client, shop: dict[str, str], target: MariaDBServer,
                     source1: MariaDBServer) -> None:
    name = f"err-{shop['source']}"
    body = task_body(name, target, [shop["source"]], shop["schema"], shop["tschema"])
    assert_dm_error(api.get("/tasks/nope-task"), 46018, "nope-task")
    assert_dm_error(api.get("/tasks/nope-task/status"), 46018, "nope-task")
    bad = task_body(name, target, ["no-such-source"], shop["schema"], shop["tschema"])
    assert_dm_error(api.post("/tasks", json=bad), 46008, "no-such-source")
    wrong_enum = {"task": {**body["task"], "shard_mode": "pessimistic_xxd"}}
    assert_dm_error(api.post("/tasks", json=wrong_enum), 49001)
    assert_dm_error(api.post("/tasks", json={"task": {"name": "x"}}), 49001)
    # Names and directories a task could not live with.
    for bad_name in ("../../t", "t/x", "t" * 43):
        assert_dm_error(api.post("/tasks", json={"task": {**body["task"], "name": bad_name}}),
                        49001, "task name")
    for data_dir in ("../../etc", "/etc"):
        esc = task_body(name, target, [shop["source"]], shop["schema"], shop["tschema"],
                        mode="dump", data_dir=data_dir)
        assert_dm_error(api.post("/tasks", json=esc), 49001, "outside the directories")
    neg = task_body(name, target, [shop["source"]], shop["schema"], shop["tschema"],
                    range_concurrency=-99)
    assert_dm_error(api.post("/tasks", json=neg), 49001, "range_concurrency")
    # The source server as its own target, its tables routed onto themselves.
    loop = task_body(name, source1, [shop["source"]], shop["schema"], shop["schema"])
    assert_dm_error(api.post("/tasks", json=loop), 49001, "onto itself", shop["source"])
    assert api.post("/tasks", json=body).status_code == 201
    assert_dm_error(api.post("/tasks", json=body), 46014, name)
    # A disabled source cannot start.
    assert api.post(f"/sources/{q(shop['source'])}/disable").status_code == 200
    assert_dm_error(api.post(f"/tasks/{q(name)}/start"), 38058)
    assert api.post(f"/sources/{q(shop['source'])}/enable").status_code == 200
    # A source used by a task cannot be deleted without force.
    assert_dm_error(api.delete(f"/sources/{q(shop['source'])}"), 46010, shop["source"])
    # Incremental without binlog meta and without start_time.
    inc = task_body(name + "-inc", target, [shop["source"]], shop["schema"], shop["tschema"],
                    mode="incremental")
    assert api.post("/tasks", json=inc).status_code == 201
    assert_dm_error(api.post(f"/tasks/{q(name + '-inc')}/start", json={}), 20022)


def add_big_table(source: MariaDBServer, schema: str, rows: int) -> None:
    """Enough rows for several chunks, so that a stop or a kill lands mid-load."""
    source.execute(f"CREATE TABLE `{schema}`.big (id INT PRIMARY KEY, k INT, "
                   "c VARCHAR(200), b VARBINARY(16))")
    source.execute(f"INSERT INTO `{schema}`.big SELECT seq, seq % 97, REPEAT('x', 150), "
                   f"UNHEX('00FF') FROM `{schema}`.seq_1_to_{rows}")


def test_stop_start_resume_no_duplicates(api: httpx.Client, shop: dict[str, str],
                                         source1: MariaDBServer, target: MariaDBServer) -> None:
    add_big_table(source1, shop["schema"], 300_000)
    name = f"resume-{shop['source']}"
    body = task_body(name, target, [shop["source"]], shop["schema"], shop["tschema"])
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    assert loading(api, name)["stage"] == "Running"
    assert api.post(f"/tasks/{q(name)}/stop", json={}).status_code == 200
    [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
    assert st["stage"] == "Paused", st
    assert st["load_status"]["progress"] != "100.00 %", st
    # Updates are refused only while running; now it is paused.
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    got = api.get(f"/tasks/{q(name)}").json()
    r = api.put(f"/tasks/{q(name)}", json={"task": got})
    if api.get(f"/tasks/{q(name)}/status").json()["data"][0]["stage"] == "Running":
        assert_dm_error(r, 46035)
    wait_stage(api, name, "Finished")
    for t in ("orders", "items", "big"):
        assert table_digest(target, shop["tschema"], t) == table_digest(
            source1, shop["schema"], t)


@pytest.mark.parametrize("victim", ["chunk_worker", "task_actor"])
def test_kill_mid_load(api: httpx.Client, shop: dict[str, str], source1: MariaDBServer,
                       target: MariaDBServer, victim: str) -> None:
    add_big_table(source1, shop["schema"], 300_000)
    name = f"kill-{victim}-{shop['source']}"
    body = task_body(name, target, [shop["source"]], shop["schema"], shop["tschema"])
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    task_actor = ray.get_actor(f"task/{name}", namespace=NAMESPACE)
    deadline = time.monotonic() + 60
    killed, at_kill = False, {}
    while time.monotonic() < deadline and not killed:
        if victim == "task_actor":
            st = api.get(f"/tasks/{q(name)}/status").json()["data"][0]
            if st.get("load_status", {}).get("finished_bytes", 0) > 0:
                ray.kill(task_actor, no_restart=False)
                killed, at_kill = True, st
        else:
            pids = ray.get(task_actor.chunk_worker_pids.remote())
            st = api.get(f"/tasks/{q(name)}/status").json()["data"][0]
            if pids and st.get("load_status", {}).get("finished_bytes", 0):
                os.kill(pids[0], signal.SIGKILL)  # mid-load: its open transaction is lost
                killed, at_kill = True, st
        time.sleep(0.2)
    assert killed
    # The kill came while chunks were still to load, not after the end.
    assert at_kill["stage"] == "Running", at_kill
    assert at_kill["load_status"]["progress"] != "100.00 %", at_kill
    wait_stage(api, name, "Finished", timeout=240)
    for t in ("orders", "items", "big"):
        assert table_digest(target, shop["tschema"], t) == table_digest(
            source1, shop["schema"], t)


def test_templates_and_converters(api: httpx.Client, shop: dict[str, str],
                                  target: MariaDBServer) -> None:
    name = f"tpl-{shop['source']}"
    body = task_body(name, target, [shop["source"]], shop["schema"], shop["tschema"])["task"]
    r = api.post("/tasks/templates", json=body)
    assert r.status_code == 201, r.text
    assert_dm_error(api.post("/tasks/templates", json=body), 20050, name)
    assert name in [t["name"] for t in api.get("/tasks/templates").json()["data"]]
    got = api.get(f"/tasks/templates/{q(name)}").json()
    assert got["name"] == name and got["target_config"]["password"] == "******"
    assert api.put(f"/tasks/templates/{q(name)}", json=body).status_code == 200
    assert api.delete(f"/tasks/templates/{q(name)}").status_code == 204
    assert_dm_error(api.get(f"/tasks/templates/{q(name)}"), 20051, name)

    conv = api.post("/tasks/converters", json={"task": body})
    assert conv.status_code == 200, conv.text
    yaml_text = conv.json()["task_config_file"]
    assert name in yaml_text
    back = api.post("/tasks/converters", json={"task_config_file": yaml_text})
    assert back.status_code == 200, back.text
    assert back.json()["task"]["name"] == name
    assert_dm_error(api.post("/tasks/converters", json={}), 49001)

    assert api.post("/tasks", json={"task": body}).status_code == 201
    imp = api.post("/tasks/templates/import", json={"overwrite": False})
    assert imp.status_code == 202, imp.text
    assert name in imp.json()["success_task_list"]
    again = api.post("/tasks/templates/import", json={"overwrite": False}).json()
    assert [f["task_name"] for f in again["failed_task_list"]] == [name]
    targets = api.get(f"/tasks/{q(name)}/sources/{q(shop['source'])}/migrate_targets").json()
    assert {(d["source_table"], d["target_schema"]) for d in targets["data"]} == {
        ("orders", shop["tschema"]), ("items", shop["tschema"]), ("nopk", shop["tschema"])}
