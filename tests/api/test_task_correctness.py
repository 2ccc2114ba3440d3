"""Everyday workflows that broke for users (issue 10): an `all` task holding its snapshot
transactions while it syncs, an `all` task started before its tables exist, start_time
losing to source_conf positions and checkpoints, counters that did not count, and the
units and stages status showed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from tests.support.api import drop_tagged, q, source_body
from tests.support.compare import wait_until_equal
from tests.support.tasks import incr_body, master_pos, rows_of, task_body, wait_stage, wait_synced


@pytest.fixture
def tag(api: httpx.Client, source1: MariaDBServer, source2: MariaDBServer,
        target: MariaDBServer) -> Iterator[str]:
    t = uuid.uuid4().hex[:6]
    yield t
    drop_tagged(api, t, source1, source2, target)


def _eq(a: Any, b: Any) -> None:
    assert a == b, (a, b)


def _rows(server: MariaDBServer, schema: str, table: str) -> list[tuple[Any, ...]] | str:
    """rows_of, or the error while the table is not there yet."""
    try:
        return rows_of(server, schema, table)
    except Exception as exc:  # the table is not there yet
        return str(exc)


def _pos_key(text: str) -> tuple[str, int]:
    name, pos = text.strip("()").split(", ")
    return name, int(pos)


def test_all_task_releases_snapshot_before_sync(api: httpx.Client, tag: str,
                                                source1: MariaDBServer,
                                                target: MariaDBServer) -> None:
    """Once in Sync no transaction of the dump is left on the source: DDL and reads on
    the migrated table do not wait."""
    schema, src, name = f"snap_{tag}", f"snapsrc-{tag}", f"snap-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT)")
    source1.execute(f"INSERT INTO `{schema}`.t VALUES " +
                    ", ".join(f"({i}, {i})" for i in range(1, 201)))
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    body = task_body(name, target, [src], schema, schema, mode="all")
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_synced(api, name, timeout=120)
    deadline = time.monotonic() + 10
    while source1.query("SELECT COUNT(*) FROM information_schema.innodb_trx")[0][0]:
        assert time.monotonic() < deadline, source1.query(
            "SELECT trx_id, trx_state, trx_started, trx_mysql_thread_id "
            "FROM information_schema.innodb_trx")
        time.sleep(0.2)
    # With a short lock wait, an ALTER would fail if a dump transaction held the table.
    source1.execute(f"SET SESSION lock_wait_timeout = 3; "
                    f"ALTER TABLE `{schema}`.t ADD COLUMN w INT DEFAULT 7")
    source1.execute(f"INSERT INTO `{schema}`.t VALUES (500, 500, 500)")
    wait_until_equal(source1, target, [((schema, "t"), (schema, "t"))], timeout=60)


@pytest.mark.parametrize("shard", [False, True])
def test_all_task_started_before_tables_exist(api: httpx.Client, tag: str, shard: bool,
                                              source1: MariaDBServer, source2: MariaDBServer,
                                              target: MariaDBServer) -> None:
    """Two sources, schemas but no tables: the empty dump still marks where the sync
    starts; the tables created afterwards and their rows reach the target."""
    schema = f"empty_{tag}"
    name = f"empty-{'shard-' if shard else ''}{tag}"
    srcs = [f"e1src-{tag}", f"e2src-{tag}"]
    for server, s in ((source1, srcs[0]), (source2, srcs[1])):
        server.execute(f"CREATE DATABASE `{schema}`")
        assert api.post("/sources", json=source_body(server, s)).status_code == 201
    body = task_body(name, target, srcs, schema, f"{schema}_m" if shard else schema,
                     mode="all")
    if shard:
        body["task"]["shard_mode"] = "pessimistic"
        for rule in body["task"]["table_migrate_rule"]:
            rule["target"]["table"] = "t"
    else:  # one target schema per source
        for rule, s in zip(body["task"]["table_migrate_rule"], ("a", "b"), strict=True):
            rule["target"]["schema"] = f"{schema}_{s}"
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_synced(api, name, timeout=120)
    for i, server in enumerate((source1, source2)):
        server.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT)")
        server.execute(f"INSERT INTO `{schema}`.t VALUES ({i * 10 + 1}, 1), ({i * 10 + 2}, 2)")
    if shard:
        want = sorted([(1, 1), (2, 2), (11, 1), (12, 2)], key=repr)
        wait_synced(api, name, lambda: _eq(_rows(target, f"{schema}_m", "t"), want),
                    timeout=60)
    else:
        wait_synced(api, name, lambda: _eq(
            (_rows(target, f"{schema}_a", "t"), _rows(target, f"{schema}_b", "t")),
            ([(1, 1), (2, 2)], [(11, 1), (12, 2)])), timeout=60)
    for st in api.get(f"/tasks/{q(name)}/status").json()["data"]:
        assert st["sync_status"]["total_events"] > 0, st
    api.delete(f"/tasks/{q(name)}", params={"force": True})
    for suffix in ("_m", "_a", "_b"):
        target.execute(f"DROP DATABASE IF EXISTS `{schema}{suffix}`")


def test_start_time_wins_over_positions_and_checkpoint(api: httpx.Client, tag: str,
                                                       source1: MariaDBServer,
                                                       target: MariaDBServer) -> None:
    schema, src, name = f"st_{tag}", f"stsrc-{tag}", f"st-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT)")
    target.execute(f"CREATE DATABASE `{schema}`")
    target.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT)")
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    body = incr_body(name, target, {src: master_pos(source1)}, schema, schema)
    assert api.post("/tasks", json=body).status_code == 201
    source1.execute(f"INSERT INTO `{schema}`.t VALUES (1, 1)")  # after the position
    time.sleep(1.1)
    t0 = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 1))
    time.sleep(1.5)
    source1.execute(f"INSERT INTO `{schema}`.t VALUES (2, 2)")  # after start_time
    # start_time wins over source_conf's binlog_name/binlog_pos: row 1 is not replicated.
    r = api.post(f"/tasks/{q(name)}/start", json={"start_time": t0})
    assert r.status_code == 200, r.text
    wait_synced(api, name, lambda: _eq(rows_of(target, schema, "t"), [(2, 2)]))
    source1.execute(f"INSERT INTO `{schema}`.t VALUES (3, 3)")
    wait_synced(api, name, lambda: _eq(rows_of(target, schema, "t"), [(2, 2), (3, 3)]))
    assert api.post(f"/tasks/{q(name)}/stop", json={}).status_code == 200
    wait_stage(api, name, "Paused")
    # ...and over the checkpoint (now after row 3): back to t0, the rows since replay
    # (in safe mode) and the one deleted behind dmray's back comes again.
    target.execute(f"DELETE FROM `{schema}`.t WHERE id = 2")
    r = api.post(f"/tasks/{q(name)}/start", json={"start_time": t0})
    assert r.status_code == 200, r.text
    wait_synced(api, name, lambda: _eq(rows_of(target, schema, "t"), [(2, 2), (3, 3)]))
    # A stopped incremental subtask shows its unit: Sync.
    assert api.post(f"/tasks/{q(name)}/stop", json={}).status_code == 200
    [st] = wait_stage(api, name, "Paused")
    assert st["unit"] == "Sync", st


def test_counters_count(api: httpx.Client, tag: str, source1: MariaDBServer,
                        target: MariaDBServer, tmp_path: Any) -> None:
    schema, src = f"cnt_{tag}", f"cntsrc-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v VARCHAR(40))")
    source1.execute(f"INSERT INTO `{schema}`.t VALUES " +
                    ", ".join(f"({i}, 'row {i}')" for i in range(1, 1001)))
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201

    # dump: rows and bytes of the files written
    dump = f"cntd-{tag}"
    body = task_body(dump, target, [src], schema, schema, mode="dump",
                     data_dir=str(tmp_path / "dump"))
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(dump)}/start", json={}).status_code == 200
    [st] = wait_stage(api, dump, "Finished")
    ds = st["dump_status"]
    assert ds["finished_rows"] == 1000 and ds["finished_bytes"] > 10_000, ds
    assert ds["total_tables"] == 1 and ds["completed_tables"] == 1, ds

    # all: load_status totals, then sync_status's io counters
    name = f"cnta-{tag}"
    body = task_body(name, target, [src], schema, schema, mode="all")
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_synced(api, name, timeout=120)
    source1.execute(f"INSERT INTO `{schema}`.t VALUES " +
                    ", ".join(f"({i}, 'row {i}')" for i in range(1001, 1101)))
    wait_until_equal(source1, target, [((schema, "t"), (schema, "t"))], timeout=60)
    deadline = time.monotonic() + 30
    while True:
        [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
        ss = st["sync_status"]
        if (ss["total_events"] >= 1 and ss["synced"]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ss["io_total_bytes"] > 1000 and ss["dump_io_total_bytes"] > 1000, ss
    assert _pos_key(ss["master_binlog"]) >= _pos_key(ss["syncer_binlog"]), ss
    assert api.post(f"/tasks/{q(name)}/stop", json={}).status_code == 200
    [st] = wait_stage(api, name, "Paused")
    assert st["unit"] == "Sync", st


def test_dump_file_rows_unit(tmp_path: Any) -> None:
    from mysqlkit.full.dumpfiles import chunk_file_rows, statement_rows

    stmt = b"INSERT INTO `s`.`t` (`a`,`b`) VALUES\n(1,'x;\\n'),\n(2,'y');\n"
    assert statement_rows(stmt) == 2
    path = tmp_path / "chunk.sql"
    path.write_bytes(stmt * 3 + b"INSERT INTO `s`.`t` (`a`) VALUES\n(3);\n")
    assert chunk_file_rows(path) == 7


async def test_idempotent_setup_is_silent(target: MariaDBServer, tag: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """Meta-schema set-up runs on every start: its IF NOT EXISTS notes are not logged."""
    from mysqlkit import upstream
    from mysqlkit.sync import checkpoint

    cfg = upstream.ConnConfig(host=target.host, port=target.port, user=target.user,
                              password=target.password)
    meta = f"meta_{tag}"
    with caplog.at_level("WARNING"):
        for _ in range(3):
            async with upstream.open_conn(cfg) as conn:
                await checkpoint.ensure_table(conn, meta, "t")
    assert not [r for r in caplog.records if "exists" in r.getMessage()], caplog.records
    target.execute(f"DROP DATABASE `{meta}`")
