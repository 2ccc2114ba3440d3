"""Incremental replication (task modes `incremental` and `all`) end to end through the HTTP
API, against the private MariaDB servers and the session's Ray."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from tests.support.api import assert_dm_error, q, source_body
from tests.support.tasks import (
    incr_body,
    master_pos,
    rows_of,
    task_body,
    wait_stage,
    wait_synced,
)


def columns_of(server: MariaDBServer, schema: str, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r[:2]) for r in server.query(
        "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE "
        "TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (schema, table))]


@pytest.fixture
def repl(api: httpx.Client, source1: MariaDBServer,
         target: MariaDBServer) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    schema, tschema, src = f"inc_{tag}", f"incc_{tag}", f"isrc-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(f"CREATE TABLE `{schema}`.t1 (id INT PRIMARY KEY, k INT NOT NULL, "
                    "c VARCHAR(64), b VARBINARY(16)) DEFAULT CHARSET=utf8mb4")
    source1.executemany(f"INSERT INTO `{schema}`.t1 VALUES (%s, %s, %s, %s)",
                        [(i, i * 7, f"r{i}-ë😀", bytes([i % 256, 0, 39, 92])) for i in
                         range(1, 201)])
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    yield {"schema": schema, "tschema": tschema, "source": src, "tag": tag}
    for t in api.get("/tasks").json()["data"]:
        api.delete(f"/tasks/{q(t['name'])}", params={"force": True})
    api.delete(f"/sources/{q(src)}", params={"force": True})
    source1.execute(f"DROP DATABASE IF EXISTS `{schema}`")
    target.execute(f"DROP DATABASE IF EXISTS `{tschema}`")


def test_incremental_needs_meta(api: httpx.Client, repl: dict[str, str],
                                target: MariaDBServer) -> None:
    name = f"nometa-{repl['tag']}"
    body = task_body(name, target, [repl["source"]], repl["schema"], repl["tschema"],
                     mode="incremental")
    assert api.post("/tasks", json=body).status_code == 201
    assert_dm_error(api.post(f"/tasks/{q(name)}/start", json={}), 20022,
                    "must set meta for task-mode incremental")
    [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
    assert st["stage"] == "Stopped"
    assert_dm_error(api.post(f"/tasks/{q(name)}/start",
                             json={"safe_mode_time_duration": "ten"}), 49001, "duration")


def test_incremental_dml_and_ddl(api: httpx.Client, repl: dict[str, str],
                                 source1: MariaDBServer, target: MariaDBServer) -> None:
    s, ts = repl["schema"], repl["tschema"]
    name = f"inc-{repl['tag']}"
    pos = master_pos(source1)
    body = incr_body(name, target, {repl["source"]: pos}, s, ts)
    r = api.post("/tasks", json=body)
    assert r.status_code == 201, r.text
    # The table and rows that exist before the start position: on the target as a prior
    # full migration would have left them.
    create = source1.query(f"SHOW CREATE TABLE `{s}`.t1")[0][1]
    target.execute(f"CREATE DATABASE `{ts}`")
    target.execute(create.replace("CREATE TABLE `t1`", f"CREATE TABLE `{ts}`.`t1`"))
    rows = source1.query(f"SELECT * FROM `{s}`.t1")
    with target.connect() as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO `{ts}`.t1 VALUES (%s, %s, %s, %s)", rows)
        conn.commit()

    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
    assert st["stage"] == "Running" and st["unit"] == "Sync"

    source1.execute(f"INSERT INTO `{s}`.t1 VALUES (1000, 1, 'new', X'00ff'), "
                    f"(1001, 2, 'it''s \\\\ ok', NULL)")
    source1.execute(f"UPDATE `{s}`.t1 SET k = k + 1 WHERE id <= 50")
    source1.execute(f"UPDATE `{s}`.t1 SET id = id + 5000 WHERE id BETWEEN 60 AND 70")
    source1.execute(f"DELETE FROM `{s}`.t1 WHERE id BETWEEN 100 AND 120")
    with source1.connect() as conn, conn.cursor() as cur:  # one multi-statement txn
        cur.execute(f"INSERT INTO `{s}`.t1 VALUES (2000, 5, 'txn', NULL)")
        cur.execute(f"UPDATE `{s}`.t1 SET c = 'txn2' WHERE id = 2000")
        cur.execute(f"DELETE FROM `{s}`.t1 WHERE id = 1")
        conn.commit()
    source1.execute(f"ALTER TABLE `{s}`.t1 ADD COLUMN d DATETIME(6) NULL AFTER k")
    source1.execute(f"INSERT INTO `{s}`.t1 VALUES (3000, 1, '2024-02-29 12:00:00.123456', "
                    f"'after ddl', NULL)")
    source1.execute(f"ALTER TABLE `{s}`.t1 DROP COLUMN b")
    source1.execute(f"UPDATE `{s}`.t1 SET c = 'x' WHERE id = 3000")
    source1.execute(f"CREATE TABLE `{s}`.t2 (a INT PRIMARY KEY, v TEXT)")
    source1.execute(f"INSERT INTO `{s}`.t2 VALUES (1, 'one'), (2, 'two')")
    source1.execute(f"RENAME TABLE `{s}`.t2 TO `{s}`.t3")
    source1.execute(f"INSERT INTO `{s}`.t3 VALUES (3, 'three')")

    def same() -> None:
        for t in ("t1", "t3"):
            assert columns_of(target, ts, t) == columns_of(source1, s, t), t
            assert rows_of(target, ts, t) == rows_of(source1, s, t), t

    [st] = wait_synced(api, name, same)
    sync = st["sync_status"]
    for field in ("total_events", "total_tps", "recent_tps", "master_binlog",
                  "master_binlog_gtid", "syncer_binlog", "syncer_binlog_gtid", "blocking_ddls",
                  "unresolved_groups", "synced", "binlog_type", "seconds_behind_master",
                  "io_total_bytes", "dump_io_total_bytes"):
        assert field in sync, field
    assert sync["binlog_type"] == "remote"
    assert sync["total_events"] >= 85
    assert sync["syncer_binlog"].startswith("(mysql-bin.")
    ckpt = target.query(f"SELECT binlog_name, binlog_pos FROM dm_meta.`{name}_syncer_checkpoint`"
                        f" WHERE is_global = 1")
    assert len(ckpt) == 1

    # The schema tracker endpoints.
    base = f"/tasks/{q(name)}/sources/{q(repl['source'])}/schemas"
    assert s in api.get(base).json()
    assert {"t1", "t3"} <= set(api.get(f"{base}/{s}").json())
    got = api.get(f"{base}/{s}/t1").json()
    assert got["schema_name"] == s and got["table_name"] == "t1"
    assert "`d` datetime(6)" in got["schema_create_sql"].lower()
    assert "`b`" not in got["schema_create_sql"]
    assert api.put(f"{base}/{s}/t1", json={"schema_source": "upstream"}).status_code == 400

    # Stop, write, start: it resumes from the checkpoint.
    assert api.post(f"/tasks/{q(name)}/stop", json={}).status_code == 200
    wait_stage(api, name, "Paused")
    source1.execute(f"INSERT INTO `{s}`.t1 (id, k, c) VALUES (4000, 4, 'while paused')")
    assert_dm_error(api.put(f"{base}/{s}/t1", json={"schema_source": "sql"}), 49001,
                    "CREATE TABLE")
    assert_dm_error(api.put(f"{base}/{s}/t1", json={"schema_source": "upstream",
                                                     "sql_content": "x"}), 49001)
    assert_dm_error(api.put(f"{base}/{s}/t1", json={"schema_source": "sql",
                                                     "sql_content": "DROP TABLE x"}), 44102)
    # Another table's structure, or a second statement after it, is refused (the second
    # statement would otherwise be taken for table options).
    other = got["schema_create_sql"].replace(f"`{s}`.`t1`", f"`{s}`.`t3`", 1)
    assert_dm_error(api.put(f"{base}/{s}/t1", json={"schema_source": "sql",
                                                     "sql_content": other}), 49001, "`t3`")
    qualified = got["schema_create_sql"].replace(f"`{s}`.`t1`", "`elsewhere`.`t1`", 1)
    assert_dm_error(api.put(f"{base}/{s}/t1", json={"schema_source": "sql",
                                                     "sql_content": qualified}), 49001,
                    "`elsewhere`")
    two = got["schema_create_sql"] + "; DROP TABLE `t1`"
    assert_dm_error(api.put(f"{base}/{s}/t1", json={"schema_source": "sql",
                                                     "sql_content": two}), 44102, "several")
    assert api.get(f"{base}/{s}/t1").json() == got  # unchanged by the invalid PUTs
    r = api.put(f"{base}/{s}/t1", json={"schema_source": "upstream"})
    assert r.status_code == 200, r.text
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_synced(api, name, same)


def test_all_mode_with_writes_during_dump(api: httpx.Client, repl: dict[str, str],
                                          source1: MariaDBServer,
                                          target: MariaDBServer) -> None:
    s, ts = repl["schema"], repl["tschema"]
    source1.executemany(f"INSERT INTO `{s}`.t1 VALUES (%s, %s, %s, NULL)",
                        [(i, i, f"bulk{i}") for i in range(1000, 30000)])
    stop = threading.Event()
    wrote = [0]

    def writer() -> None:
        i = 100_000
        with source1.connect() as conn, conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(f"INSERT INTO `{s}`.t1 VALUES ({i}, 1, 'live', NULL)")
                cur.execute(f"UPDATE `{s}`.t1 SET k = k + 1 WHERE id = {1000 + i % 20000}")
                cur.execute(f"DELETE FROM `{s}`.t1 WHERE id = {2000 + i % 20000}")
                conn.commit()
                i += 1
                wrote[0] += 3
                time.sleep(0.002)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        name = f"all-{repl['tag']}"
        body = task_body(name, target, [repl["source"]], s, ts, mode="all")
        assert api.post("/tasks", json=body).status_code == 201
        assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
            assert not st.get("error_msg"), st
            if st["unit"] == "Sync":
                break
            time.sleep(0.2)
        time.sleep(1.0)  # writes go on while syncing
    finally:
        stop.set()
        th.join()
    assert wrote[0] > 30

    def same() -> None:
        assert rows_of(target, ts, "t1") == rows_of(source1, s, "t1")

    wait_synced(api, name, same)
