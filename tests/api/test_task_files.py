"""Task modes `dump` (Dumpling/mydumper files in data_dir) and `load` (import such files,
ours or mydumper's), and a failure that pauses a subtask until it is fixed."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from tests.support.api import drop_test_objects, q, source_body
from tests.support.tasks import table_digest, task_body, wait_stage


@pytest.fixture
def files_env(api: httpx.Client, source1: MariaDBServer, target: MariaDBServer,
              tmp_path: Path) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    schema, src = f"files_{tag}", f"fsrc-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    for t, n in (("a", 2500), ("b", 40)):
        source1.execute(f"CREATE TABLE `{schema}`.`{t}` (id INT PRIMARY KEY, k INT NOT NULL, "
                        "c VARCHAR(64), b VARBINARY(16))")
        source1.executemany(f"INSERT INTO `{schema}`.`{t}` VALUES (%s, %s, %s, %s)",
                            [(i, i % 13, f"v'{i}\\ë", bytes([i % 256, 10, 0]))
                             for i in range(1, n + 1)])
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    env = {"schema": schema, "source": src, "tag": tag, "dir": tmp_path / "dump"}
    yield env
    drop_test_objects(api, source1, target, src, schema, tag)


def run_task(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    name = body["task"]["name"]
    r = api.post("/tasks", json=body)
    assert r.status_code == 201, r.text
    assert api.post(f"/tasks/{q(name)}/start").status_code == 200
    [st] = wait_stage(api, name, "Finished")
    return dict(st)


def test_dump_then_load(api: httpx.Client, files_env: dict[str, Any], source1: MariaDBServer,
                        target: MariaDBServer) -> None:
    env, data_dir = files_env, files_env["dir"]
    body = task_body(f"dump-{env['tag']}", target, [env["source"]], env["schema"],
                     f"unused_{env['tag']}", mode="dump", data_dir=str(data_dir))
    st = run_task(api, body)
    assert st["unit"] == "Dump"
    files = sorted(p.name for p in data_dir.iterdir())
    s = env["schema"]
    assert f"{s}-schema-create.sql" in files
    assert f"{s}.a-schema.sql" in files and f"{s}.b-schema.sql" in files
    assert f"{s}.a.000000000.sql" in files and "metadata" in files
    meta = (data_dir / "metadata").read_text()
    assert "Log: mysql-bin." in meta and "Pos: " in meta
    assert b"INSERT INTO" in (data_dir / f"{s}.a.000000000.sql").read_bytes()
    # dump mode writes nothing to the target
    assert not target.query(f"SHOW DATABASES LIKE 'unused_{env['tag']}'")

    tschema = f"loaded_{env['tag']}"
    body = task_body(f"load-{env['tag']}", target, [env["source"]], env["schema"], tschema,
                     mode="load", data_dir=str(data_dir))
    st = run_task(api, body)
    assert st["unit"] == "Load" and st["load_status"]["progress"] == "100.00 %"
    assert st["load_status"]["meta_binlog"].startswith("(mysql-bin.")
    for t in ("a", "b"):
        assert table_digest(target, tschema, t) == table_digest(source1, s, t)


@pytest.mark.skipif(shutil.which("mydumper") is None, reason="needs Debian's mydumper")
def test_load_a_mydumper_dump(api: httpx.Client, files_env: dict[str, Any],
                              source1: MariaDBServer, target: MariaDBServer) -> None:
    env, data_dir = files_env, files_env["dir"]
    subprocess.run(["mydumper", "-h", source1.host, "-P", str(source1.port), "-u",
                    source1.user, "-p", source1.password, "-B", env["schema"], "-t", "2",
                    "-o", str(data_dir)], check=True, capture_output=True, timeout=120)
    tschema = f"mydl_{env['tag']}"
    body = task_body(f"myload-{env['tag']}", target, [env["source"]], env["schema"], tschema,
                     mode="load", data_dir=str(data_dir))
    run_task(api, body)
    for t in ("a", "b"):
        assert table_digest(target, tschema, t) == table_digest(source1, env["schema"], t)


def test_failure_pauses_then_start_resumes(api: httpx.Client, files_env: dict[str, Any],
                                           source1: MariaDBServer,
                                           target: MariaDBServer) -> None:
    env = files_env
    tschema = f"clash_{env['tag']}"
    # The target already has table `a` with another structure.
    target.execute(f"CREATE DATABASE `{tschema}`")
    target.execute(f"CREATE TABLE `{tschema}`.a (id INT PRIMARY KEY, other TEXT)")
    name = f"clash-{env['tag']}"
    body = task_body(name, target, [env["source"]], env["schema"], tschema)
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start").status_code == 200
    [st] = wait_stage(api, name, "Paused")
    assert st["error_msg"].startswith("[code=34102:class=load-unit:scope=downstream:")
    assert "Message: " in st["error_msg"] and "Traceback" not in st["error_msg"]
    target.execute(f"DROP TABLE `{tschema}`.a")
    assert api.post(f"/tasks/{q(name)}/start").status_code == 200
    [st] = wait_stage(api, name, "Finished")
    assert "error_msg" not in st
    for t in ("a", "b"):
        assert table_digest(target, tschema, t) == table_digest(source1, env["schema"], t)


def test_duplicate_with_on_duplicate_error_pauses(api: httpx.Client,
                                                  files_env: dict[str, Any],
                                                  source1: MariaDBServer,
                                                  target: MariaDBServer) -> None:
    env = files_env
    tschema = f"dupe_{env['tag']}"
    target.execute(f"CREATE DATABASE `{tschema}`")
    target.execute(f"CREATE TABLE `{tschema}`.b (id INT PRIMARY KEY, k INT NOT NULL, "
                   "c VARCHAR(64), b VARBINARY(16))")
    target.execute(f"INSERT INTO `{tschema}`.b VALUES (7, 0, 'already here', NULL)")
    name = f"dupe-{env['tag']}"
    body = task_body(name, target, [env["source"]], env["schema"], tschema)  # on_duplicate=error
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start").status_code == 200
    [st] = wait_stage(api, name, "Paused")
    assert st["error_msg"].startswith("[code=34101:class=load-unit:scope=downstream:"), st
    assert "Duplicate entry" in st["error_msg"]
    # replace mode resolves it: the stored task is updated while paused, then resumed.
    got = api.get(f"/tasks/{q(name)}").json()
    got["on_duplicate"] = "replace"
    assert api.put(f"/tasks/{q(name)}", json={"task": got}).status_code == 200
    assert api.post(f"/tasks/{q(name)}/start").status_code == 200
    wait_stage(api, name, "Finished")
    for t in ("a", "b"):
        assert table_digest(target, tschema, t) == table_digest(source1, env["schema"], t)


def test_unreachable_target_pauses(api: httpx.Client, files_env: dict[str, Any],
                                   target: MariaDBServer) -> None:
    env = files_env
    name = f"down-{env['tag']}"
    body = task_body(name, target, [env["source"]], env["schema"], f"down_{env['tag']}")
    body["task"]["target_config"]["port"] = 1  # nothing listens there
    # The precheck finds the target down: 26005, with the driver's message in the detail.
    r = api.post("/tasks", json=body)
    assert r.status_code == 400 and r.json()["error_code"] == 26005, r.text
    body["task"]["ignore_checking_items"] = ["all"]
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start").status_code == 200
    [st] = wait_stage(api, name, "Paused")
    assert st["error_msg"].startswith("[code=10001:class=database:"), st
    assert target.password not in st["error_msg"]


def test_every_type_through_a_full_task(api: httpx.Client, files_env: dict[str, Any],
                                        source1: MariaDBServer,
                                        target: MariaDBServer) -> None:
    """The type-fidelity table of tests/mariadb/test_type_fidelity.py, migrated by a `full` task
    through the API (chunk workers, snapshot, checkpoints) and compared value by value."""
    import asyncio

    from mysqlkit import upstream
    from mysqlkit.schema.tableinfo import table_info
    from tests.mariadb.test_type_fidelity import ALL_TYPES, COLUMNS, ROWS, table_rows

    env = files_env
    schema, tschema = f"types_{env['tag']}", f"types_copy_{env['tag']}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(ALL_TYPES, database=schema)
    with source1.connect(schema) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
        cur.executemany(f"INSERT INTO alltypes ({COLUMNS}) VALUES "
                        f"({', '.join(['%s'] * len(ROWS[0]))})", ROWS)
    name = f"types-{env['tag']}"
    body = task_body(name, target, [env["source"]], schema, tschema)
    run_task(api, body)

    async def info() -> Any:
        async with upstream.open_conn(upstream.ConnConfig(**source1.conn_kwargs())) as conn:
            return await table_info(conn, schema, "alltypes")

    table = asyncio.run(info())
    src_rows = table_rows(source1, table, schema, "alltypes", "id")
    assert len(src_rows) == len(ROWS)
    assert table_rows(target, table, tschema, "alltypes", "id") == src_rows
    source1.execute(f"DROP DATABASE `{schema}`")


def test_a_lock_conflict_on_the_target_loads_the_chunk_again(
        api: httpx.Client, files_env: dict[str, Any], source1: MariaDBServer,
        target: MariaDBServer) -> None:
    """A chunk whose load times out on a row lock (1205; a deadlock, 1213, likewise) is
    rolled back and loaded again, instead of pausing the subtask."""
    env = files_env
    tschema = f"locked_{env['tag']}"
    target.execute(f"CREATE DATABASE `{tschema}`")
    target.execute(f"CREATE TABLE `{tschema}`.a (id INT PRIMARY KEY, k INT NOT NULL, "
                   "c VARCHAR(64), b VARBINARY(16))")
    [(timeout,)] = target.query("SELECT @@GLOBAL.innodb_lock_wait_timeout")
    target.execute("SET GLOBAL innodb_lock_wait_timeout = 1")  # the load sessions' too
    holder = target.connect()
    try:
        with holder.cursor() as cur:  # an uncommitted row 1: the load waits for its lock
            cur.execute("BEGIN")
            cur.execute(f"INSERT INTO `{tschema}`.a VALUES (1, 0, 'held', NULL)")
        name = f"locked-{env['tag']}"
        body = task_body(name, target, [env["source"]], env["schema"], tschema)
        assert api.post("/tasks", json=body).status_code == 201
        assert api.post(f"/tasks/{q(name)}/start").status_code == 200
        deadline = time.monotonic() + 60
        while not target.query("SELECT 1 FROM information_schema.PROCESSLIST WHERE INFO "
                               "LIKE %s", (f"LOAD DATA%`{tschema}`.`a`%",)):
            assert time.monotonic() < deadline, "no load of table a seen"
            time.sleep(0.05)
        time.sleep(2.5)  # more than the lock wait timeout: at least one 1205 by now
        [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
        assert st["stage"] == "Running", st
    finally:
        holder.rollback()
        holder.close()
        target.execute(f"SET GLOBAL innodb_lock_wait_timeout = {int(timeout)}")
    [st] = wait_stage(api, name, "Finished")
    assert "error_msg" not in st
    for t in ("a", "b"):
        assert table_digest(target, tschema, t) == table_digest(source1, env["schema"], t)
