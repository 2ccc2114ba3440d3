"""Deferred secondary indexes through real tasks (real Ray, real MariaDB): target tables are
created without their plain secondary indexes, loaded, then given them by one ALTER per
table; the result equals the source, through kills, stops and restarts, in `full` and in
`load` mode, and a table the user created is never altered."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from actors.config import NAMESPACE
from mysqlkit.full.deferred_index import split_create
from mysqlkit.meta import drop_task_meta
from mysqlkit.upstream import ConnConfig
from testbed.mariadb import MariaDBServer
from tests.support.api import drop_test_objects, q, source_body
from tests.support.tasks import loading, task_body, wait_stage

TABLES = ("multi", "parent", "child", "pre")
INDEXED = ("multi", "parent", "child")


def create_source_tables(source: MariaDBServer, schema: str, rows: int) -> None:
    """`multi`: a UNIQUE key and plain keys of every shape (composite, DESC, prefix, with a
    comment, USING); `parent`/`child`: foreign keys (child's on a parent's plain KEY);
    `pre`: pre-created on the target by the tests, without its index."""
    source.execute(
        f"CREATE TABLE `{schema}`.multi (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "a INT NOT NULL, b INT NOT NULL, c VARCHAR(100), d DATE, "
        "UNIQUE KEY ub (b), KEY ka (a), KEY `k``ab` (a, b DESC), "
        "KEY kc (c(10)) COMMENT 'by c, (a prefix)', KEY kd (d, a) USING BTREE) ENGINE=InnoDB")
    source.execute(
        f"INSERT INTO `{schema}`.multi SELECT seq, seq % 1000, seq, "
        "CONCAT('v', seq % 777, REPEAT('x', 30)), '2020-01-01' + INTERVAL (seq % 3000) DAY "
        f"FROM `{schema}`.seq_1_to_{rows}")
    source.execute(f"CREATE TABLE `{schema}`.parent (id INT PRIMARY KEY, code INT NOT NULL, "
                   "KEY kcode (code), KEY kboth (code, id))")
    source.execute(f"INSERT INTO `{schema}`.parent SELECT seq, seq * 3 FROM "
                   f"`{schema}`.seq_1_to_500")
    source.execute(
        f"CREATE TABLE `{schema}`.child (id INT PRIMARY KEY, pid INT, code INT, z INT, "
        "KEY kz (z), CONSTRAINT fk_p FOREIGN KEY (pid) REFERENCES parent (id), "
        "CONSTRAINT fk_code FOREIGN KEY (code) REFERENCES parent (code))")
    source.execute(f"INSERT INTO `{schema}`.child SELECT seq, seq % 500 + 1, "
                   f"(seq % 500 + 1) * 3, seq % 7 FROM `{schema}`.seq_1_to_2000")
    source.execute(f"CREATE TABLE `{schema}`.pre (id INT PRIMARY KEY, v INT, KEY kv (v))")
    source.execute(f"INSERT INTO `{schema}`.pre SELECT seq, seq % 5 FROM "
                   f"`{schema}`.seq_1_to_100")


def index_rows(server: MariaDBServer, schema: str, table: str) -> list[tuple[Any, ...]]:
    return server.query(
        "SELECT INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, COLLATION, SUB_PART, "
        "NULLABLE, INDEX_TYPE, COMMENT, INDEX_COMMENT, IGNORED FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        (schema, table))


def checksum(server: MariaDBServer, schema: str, table: str) -> tuple[int, int]:
    [(count,)] = server.query(f"SELECT COUNT(*) FROM `{schema}`.`{table}`")
    [(_, crc)] = server.query(f"CHECKSUM TABLE `{schema}`.`{table}`")
    return int(count), int(crc)


def assert_migrated(source: MariaDBServer, target: MariaDBServer, schema: str,
                    tschema: str, tables: tuple[str, ...] = INDEXED) -> None:
    for t in tables:
        assert index_rows(target, tschema, t) == index_rows(source, schema, t), t
        assert checksum(target, tschema, t) == checksum(source, schema, t), t


def marks(target: MariaDBServer, task: str) -> list[tuple[Any, ...]]:
    table = f"{task}_loader_deferred_index"
    if not target.query("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                        "'dm_meta' AND TABLE_NAME = %s", (table,)):
        return []
    return target.query(f"SELECT source_name, schema_name, table_name FROM "
                        f"dm_meta.`{table}` ORDER BY table_name")


def binlog_at(server: MariaDBServer) -> tuple[str, int]:
    [row] = server.query("SHOW MASTER STATUS")
    return str(row[0]), int(row[1])


def binlog_queries(server: MariaDBServer, since: tuple[str, int], needle: str) -> list[str]:
    """The Query events (DDL) written since `since` that contain `needle`, from it on."""
    logs = [str(r[0]) for r in server.query("SHOW BINARY LOGS")]
    out: list[str] = []
    for f in logs[logs.index(since[0]):]:
        at = f" FROM {since[1]}" if f == since[0] else ""
        out += [str(r[5]) for r in server.query(f"SHOW BINLOG EVENTS IN '{f}'{at}")
                if r[2] == "Query" and needle in str(r[5])]
    return [x[x.index(needle):] for x in out]  # without MariaDB's `use db; set ...; `


def mark_row(target: MariaDBServer, task: str, source: str, tschema: str, table: str,
             create_sql: str, defs: tuple[str, ...] = ()) -> tuple[str, ...]:
    """What dmray writes before creating `table` without its indexes (those of
    `create_sql`, or `defs`); returns them."""
    indexes = defs or split_create(create_sql).indexes
    target.execute("CREATE DATABASE IF NOT EXISTS dm_meta")
    target.execute(
        f"CREATE TABLE IF NOT EXISTS dm_meta.`{task}_loader_deferred_index` ("
        " source_name VARCHAR(255) NOT NULL, schema_name VARCHAR(255) NOT NULL,"
        " table_name VARCHAR(255) NOT NULL, index_defs MEDIUMTEXT NOT NULL,"
        " created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
        " PRIMARY KEY (source_name, schema_name, table_name)"
        ") DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
    target.execute(f"INSERT INTO dm_meta.`{task}_loader_deferred_index` (source_name, "
                   "schema_name, table_name, index_defs) VALUES (%s, %s, %s, %s)",
                   (source, tschema, table, json.dumps(indexes)))
    return indexes


def show_create(server: MariaDBServer, schema: str, table: str) -> str:
    return str(server.query(f"SHOW CREATE TABLE `{schema}`.`{table}`")[0][1])


@pytest.fixture
def di(api: httpx.Client, source1: MariaDBServer, target: MariaDBServer,
       tmp_path: Path) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    schema, tschema, src = f"di_{tag}", f"di_copy_{tag}", f"disrc-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    yield {"schema": schema, "tschema": tschema, "source": src, "tag": tag,
           "dir": tmp_path / "dump"}
    drop_test_objects(api, source1, target, src, schema, tag)


def start(api: httpx.Client, body: dict[str, Any]) -> str:
    name = str(body["task"]["name"])
    r = api.post("/tasks", json=body)
    assert r.status_code == 201, r.text
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    return name


def precreate_pre(target: MariaDBServer, tschema: str) -> None:
    target.execute(f"CREATE DATABASE IF NOT EXISTS `{tschema}`")
    target.execute(f"CREATE TABLE `{tschema}`.pre (id INT PRIMARY KEY, v INT)")


def test_full_task_adds_the_deferred_indexes_after_the_load(
        api: httpx.Client, di: dict[str, Any], source1: MariaDBServer,
        target: MariaDBServer) -> None:
    schema, tschema = di["schema"], di["tschema"]
    create_source_tables(source1, schema, 120_000)  # 3 chunks of `multi`
    precreate_pre(target, tschema)
    # `solo` is referenced by a foreign key of a table the user has in the target.
    source1.execute(f"CREATE TABLE `{schema}`.solo (id INT PRIMARY KEY, v INT, KEY kv (v))")
    source1.execute(f"INSERT INTO `{schema}`.solo VALUES (1, 10), (2, 20)")
    target.execute(f"SET foreign_key_checks = 0; CREATE TABLE `{tschema}`.userkid (id INT "
                   "PRIMARY KEY, v INT, KEY (v), FOREIGN KEY (v) REFERENCES solo (v))")
    since = binlog_at(target)
    name = start(api, task_body(f"di-full-{di['tag']}", target, [di["source"]], schema,
                                tschema))
    [st] = wait_stage(api, name, "Finished")
    assert st["unit"] == "Load"
    assert_migrated(source1, target, schema, tschema, (*INDEXED, "solo"))
    # The user's table keeps the structure the user gave it; its rows are loaded.
    assert [r[0] for r in index_rows(target, tschema, "pre")] == ["PRIMARY"]
    assert checksum(target, tschema, "pre")[0] == 100
    # `multi` was created without its plain keys and got them by one ALTER; the tables
    # with foreign keys (child) or referenced by one (parent, solo) were created whole.
    [create] = binlog_queries(target, since, f"CREATE TABLE IF NOT EXISTS `{tschema}`.`multi`")
    assert "UNIQUE KEY `ub`" in create and "KEY `ka`" not in create
    [create] = binlog_queries(target, since, f"CREATE TABLE IF NOT EXISTS `{tschema}`.`solo`")
    assert "KEY `kv`" in create
    [alter] = binlog_queries(target, since, "ALTER TABLE")
    assert alter.startswith(f"ALTER TABLE `{tschema}`.`multi` ADD KEY `ka` (`a`), ADD KEY "
                            "`k``ab` (`a`,`b` DESC), ADD KEY `kc` (`c`(10)) COMMENT 'by c, "
                            "(a prefix)', ADD KEY `kd` (`d`,`a`) USING BTREE"), alter
    assert marks(target, name) == []
    # Delete without keep_meta drops the marks table with the checkpoints.
    assert target.query("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA="
                        "'dm_meta' AND TABLE_NAME=%s", (f"{name}_loader_deferred_index",)) \
        == [(1,)]
    assert api.delete(f"/tasks/{q(name)}").status_code == 204
    assert target.query("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA="
                        "'dm_meta' AND TABLE_NAME=%s", (f"{name}_loader_deferred_index",)) \
        == [(0,)]


def test_marked_tables_get_their_indexes_after_a_restart(
        api: httpx.Client, di: dict[str, Any], source1: MariaDBServer,
        target: MariaDBServer) -> None:
    """A crash after the mark (the table exists now, without its indexes: ours all the
    same), and a crash after every chunk was loaded but before the ALTER."""
    schema, tschema = di["schema"], di["tschema"]
    create_source_tables(source1, schema, 3000)
    name = f"di-mark-{di['tag']}"
    # The first run crashed right after creating `multi` without its indexes.
    defs = mark_row(target, name, di["source"], tschema, "multi",
                    show_create(source1, schema, "multi"))
    assert len(defs) == 4
    target.execute(f"CREATE DATABASE `{tschema}`")
    target.execute(split_create(show_create(source1, schema, "multi")).create_sql,
                   database=tschema)
    start(api, task_body(name, target, [di["source"]], schema, tschema))
    wait_stage(api, name, "Finished")
    assert_migrated(source1, target, schema, tschema, (*INDEXED, "pre"))
    assert marks(target, name) == []

    # All chunks loaded, then a crash before the ALTER (one index was added already).
    target.execute(f"ALTER TABLE `{tschema}`.multi DROP KEY ka, DROP KEY kc, DROP KEY kd")
    mark_row(target, name, di["source"], tschema, "multi", show_create(source1, schema, "multi"))
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_stage(api, name, "Finished")
    assert_migrated(source1, target, schema, tschema, (*INDEXED, "pre"))
    assert marks(target, name) == []

    # Without a mark, a table that exists is the user's: never altered.
    target.execute(f"ALTER TABLE `{tschema}`.multi DROP KEY ka")
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_stage(api, name, "Finished")
    assert "ka" not in {r[0] for r in index_rows(target, tschema, "multi")}


def test_a_failing_alter_pauses_the_subtask(api: httpx.Client, di: dict[str, Any],
                                            source1: MariaDBServer,
                                            target: MariaDBServer) -> None:
    schema, tschema = di["schema"], di["tschema"]
    create_source_tables(source1, schema, 3000)
    name = f"di-fail-{di['tag']}"
    precreate_pre(target, tschema)
    mark_row(target, name, di["source"], tschema, "pre", "", ("KEY `bad` (`nope`)",))
    start(api, task_body(name, target, [di["source"]], schema, tschema))
    [st] = wait_stage(api, name, "Paused")
    assert st["error_msg"].startswith("[code=34103:class=load-unit:scope=downstream:"), st
    assert f"`{tschema}`.`pre`" in st["error_msg"] and "nope" in st["error_msg"], st
    # Fixed (here: the bad mark dropped), a start finishes what the pause interrupted.
    target.execute(f"DELETE FROM dm_meta.`{name}_loader_deferred_index` WHERE "
                   "table_name = 'pre'")
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_stage(api, name, "Finished")
    assert_migrated(source1, target, schema, tschema)
    assert [r[0] for r in index_rows(target, tschema, "pre")] == ["PRIMARY"]


@pytest.mark.parametrize("how", ["kill_chunk_worker", "kill_task_actor", "stop_start"])
def test_interrupted_load_still_ends_with_every_index(
        api: httpx.Client, di: dict[str, Any], source1: MariaDBServer,
        target: MariaDBServer, how: str) -> None:
    schema, tschema = di["schema"], di["tschema"]
    create_source_tables(source1, schema, 300_000)
    precreate_pre(target, tschema)
    name = start(api, task_body(f"di-{how}-{di['tag']}", target, [di["source"]], schema,
                                tschema))
    task_actor = ray.get_actor(f"task/{name}", namespace=NAMESPACE)
    st = loading(api, name)
    assert st["stage"] == "Running" and st["load_status"]["progress"] != "100.00 %", st
    if how == "kill_chunk_worker":
        pids = ray.get(task_actor.chunk_worker_pids.remote())
        os.kill(pids[0], signal.SIGKILL)
    elif how == "kill_task_actor":
        ray.kill(task_actor, no_restart=False)
    else:
        assert api.post(f"/tasks/{q(name)}/stop", json={}).status_code == 200
        # Stopped mid-load: a marked table without all its indexes.
        assert ("multi",) in [m[2:] for m in marks(target, name)]
        assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_stage(api, name, "Finished", timeout=240)
    assert_migrated(source1, target, schema, tschema)
    assert [r[0] for r in index_rows(target, tschema, "pre")] == ["PRIMARY"]
    assert marks(target, name) == []


def test_stop_during_the_alter_kills_it_and_start_adds_the_indexes(
        api: httpx.Client, di: dict[str, Any], source1: MariaDBServer,
        target: MariaDBServer) -> None:
    schema, tschema = di["schema"], di["tschema"]
    create_source_tables(source1, schema, 300_000)
    name = start(api, task_body(f"di-alter-{di['tag']}", target, [di["source"]], schema,
                                tschema))
    running = ("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s")
    like = f"ALTER TABLE `{tschema}`.`multi` ADD KEY%"
    deadline = time.monotonic() + 120
    while not target.query(running, (like,)):
        assert time.monotonic() < deadline, "no ALTER seen"
        time.sleep(0.02)
    assert api.post(f"/tasks/{q(name)}/stop", json={}).status_code == 200
    deadline = time.monotonic() + 10
    while target.query(running, (like,)):  # killed, not left to run on
        assert time.monotonic() < deadline, "the ALTER still runs after the stop"
        time.sleep(0.1)
    assert "ka" not in {r[0] for r in index_rows(target, tschema, "multi")}
    assert ("multi",) in [m[2:] for m in marks(target, name)]
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_stage(api, name, "Finished", timeout=240)
    assert_migrated(source1, target, schema, tschema, (*INDEXED, "pre"))
    assert marks(target, name) == []


def test_load_mode_defers_too(api: httpx.Client, di: dict[str, Any], source1: MariaDBServer,
                              target: MariaDBServer) -> None:
    schema, tag, data_dir = di["schema"], di["tag"], di["dir"]
    create_source_tables(source1, schema, 3000)
    name = start(api, task_body(f"di-dump-{tag}", target, [di["source"]], schema,
                                f"unused_{tag}", mode="dump", data_dir=str(data_dir)))
    wait_stage(api, name, "Finished")

    tschema = f"di_loaded_{tag}"
    precreate_pre(target, tschema)
    since = binlog_at(target)
    name = start(api, task_body(f"di-load-{tag}", target, [di["source"]], schema, tschema,
                                mode="load", data_dir=str(data_dir)))
    wait_stage(api, name, "Finished")
    assert_migrated(source1, target, schema, tschema)
    assert [r[0] for r in index_rows(target, tschema, "pre")] == ["PRIMARY"]
    [alter] = binlog_queries(target, since, "ALTER TABLE")
    assert alter.startswith(f"ALTER TABLE `{tschema}`.`multi` ADD KEY `ka`"), alter
    assert marks(target, name) == []

    # A restart after every file was loaded but before the ALTER.
    target.execute(f"ALTER TABLE `{tschema}`.multi DROP KEY kc")
    mark_row(target, name, di["source"], tschema, "multi", show_create(source1, schema, "multi"))
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_stage(api, name, "Finished")
    assert_migrated(source1, target, schema, tschema)
    assert marks(target, name) == []


@pytest.mark.skipif(shutil.which("mydumper") is None, reason="needs Debian's mydumper")
def test_load_of_a_mydumper_dump_defers_too(api: httpx.Client, di: dict[str, Any],
                                            source1: MariaDBServer,
                                            target: MariaDBServer) -> None:
    schema, tag, data_dir = di["schema"], di["tag"], di["dir"]
    create_source_tables(source1, schema, 3000)
    subprocess.run(["mydumper", "-h", source1.host, "-P", str(source1.port), "-u",
                    source1.user, "-p", source1.password, "-B", schema, "-t", "2",
                    "-r", "1000", "-o", str(data_dir)], check=True, capture_output=True,
                   timeout=120)
    tschema = f"di_myloaded_{tag}"
    since = binlog_at(target)
    name = start(api, task_body(f"di-myload-{tag}", target, [di["source"]], schema, tschema,
                                mode="load", data_dir=str(data_dir)))
    wait_stage(api, name, "Finished")
    assert_migrated(source1, target, schema, tschema, (*INDEXED, "pre"))
    alters = sorted(binlog_queries(target, since, "ALTER TABLE"))
    assert [a.split(" (", 1)[0] for a in alters] == [
        f"ALTER TABLE `{tschema}`.`multi` ADD KEY `ka`",
        f"ALTER TABLE `{tschema}`.`pre` ADD KEY `kv`"]


async def test_remove_meta_keeps_the_marks_and_delete_drops_them(
        target: MariaDBServer) -> None:
    """remove_meta keeps the marks (the half-built tables stay and still need their
    indexes on the next start); a delete without keep_meta drops the table."""
    task = f"di-meta-{uuid.uuid4().hex[:6]}"
    create = ("CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n"
              "  PRIMARY KEY (`id`),\n  KEY `ka` (`a`)\n) ENGINE=InnoDB")
    for source in ("s1", "s2"):
        mark_row(target, task, source, "x", "t", create)
    cfg = ConnConfig(**target.conn_kwargs())
    await drop_task_meta(cfg, "dm_meta", task, "s1")
    assert marks(target, task) == [("s1", "x", "t"), ("s2", "x", "t")]
    await drop_task_meta(cfg, "dm_meta", task, None)
    assert not target.query("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                            "'dm_meta' AND TABLE_NAME = %s", (f"{task}_loader_deferred_index",))
