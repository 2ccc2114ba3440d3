"""Shard merge with DDL (task shard_mode): shards on two sources feed one target table; the
shards' ADD/DROP COLUMN, indexes, TRUNCATE/DROP/CREATE TABLE keep the merged table the
union of their structures, without pausing and without losing rows; a column rename on one
shard of several is a conflict that pauses that subtask."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from tests.support.api import drop_tagged, q, source_body
from tests.support.tasks import incr_body, master_pos, wait_synced

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def tag(api: httpx.Client, source1: MariaDBServer, source2: MariaDBServer,
        target: MariaDBServer) -> Iterator[str]:
    t = uuid.uuid4().hex[:6]
    yield t
    drop_tagged(api, t, source1, source2, target)


def columns(server: MariaDBServer, schema: str, table: str) -> list[str]:
    return [str(r[0]) for r in server.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
        "TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (schema, table))]


def rows(server: MariaDBServer, schema: str, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in server.query(f"SELECT * FROM `{schema}`.`{table}` ORDER BY id")]


def has(target: MariaDBServer, tschema: str, want: list[tuple[Any, ...]],
        exact: bool = True) -> Callable[[], None]:
    def check() -> None:
        got = rows(target, tschema, "merged")
        assert got == want if exact else set(want) <= set(got), got
    return check


def test_shard_ddl_keeps_the_merged_table_the_union(api: httpx.Client, tag: str,
                                                    source1: MariaDBServer,
                                                    source2: MariaDBServer,
                                                    target: MariaDBServer) -> None:
    schema, tschema, name = f"shm_{tag}", f"shmc_{tag}", f"shm-{tag}"
    src1, src2 = f"shm1-{tag}", f"shm2-{tag}"
    make = "(id INT PRIMARY KEY, v VARCHAR(20))"
    for server, shards in ((source1, ("shard_1", "shard_2")), (source2, ("shard_3",))):
        server.execute(f"CREATE DATABASE `{schema}`")
        for t in shards:
            server.execute(f"CREATE TABLE `{schema}`.{t} {make}")
    target.execute(f"CREATE DATABASE `{tschema}`; CREATE TABLE `{tschema}`.merged {make}")
    for server, src in ((source1, src1), (source2, src2)):
        assert api.post("/sources", json=source_body(server, src)).status_code == 201
    body = incr_body(name, target, {src1: master_pos(source1), src2: master_pos(source2)},
                     schema, tschema, shard_mode="optimistic")
    body["task"]["table_migrate_rule"] = [
        {"source": {"source_name": s, "schema": schema, "table": "shard_*"},
         "target": {"schema": tschema, "table": "merged"}} for s in (src1, src2)]
    r = api.post("/tasks", json=body)
    assert r.status_code == 201, r.text
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    # Both subtasks have their trackers (from the merged table) before the shards change.
    wait_synced(api, name)
    s1 = f"`{schema}`"

    # Rows, then shard_1 adds a column: the merged table gets it at once.
    source1.execute(f"INSERT INTO {s1}.shard_1 VALUES (1, 'a'); "
                    f"INSERT INTO {s1}.shard_2 VALUES (2, 'b')")
    source2.execute(f"INSERT INTO {s1}.shard_3 VALUES (3, 'c')")
    source1.execute(f"ALTER TABLE {s1}.shard_1 ADD COLUMN n INT, ADD INDEX ix_v (v)")
    source1.execute(f"INSERT INTO {s1}.shard_1 VALUES (11, 'a2', 110)")
    source1.execute(f"INSERT INTO {s1}.shard_2 VALUES (12, 'b2')")  # no `n` yet
    wait_synced(api, name, has(target, tschema, [
        (1, "a", None), (2, "b", None), (3, "c", None), (11, "a2", 110), (12, "b2", None)]))
    # The same DDL on the other shards is not run again (it would fail: duplicate column).
    source1.execute(f"ALTER TABLE {s1}.shard_2 ADD COLUMN n INT, ADD INDEX ix_v (v)")
    source2.execute(f"ALTER TABLE {s1}.shard_3 ADD COLUMN n INT, ADD INDEX ix_v (v)")
    source1.execute(f"INSERT INTO {s1}.shard_2 VALUES (22, 'b3', 220)")
    source2.execute(f"INSERT INTO {s1}.shard_3 VALUES (33, 'c3', 330)")

    wait_synced(api, name, has(target, tschema, [(22, "b3", 220), (33, "c3", 330)],
                               exact=False))
    assert columns(target, tschema, "merged") == ["id", "v", "n"]

    # DROP COLUMN: the column stays while a shard (here on the other source) has it.
    source1.execute(f"ALTER TABLE {s1}.shard_1 DROP COLUMN n")
    source1.execute(f"ALTER TABLE {s1}.shard_2 DROP COLUMN n")
    source1.execute(f"INSERT INTO {s1}.shard_1 VALUES (13, 'a4')")
    source2.execute(f"INSERT INTO {s1}.shard_3 VALUES (34, 'c4', 340)")
    wait_synced(api, name, has(target, tschema, [(34, "c4", 340), (13, "a4", None)],
                               exact=False))
    assert columns(target, tschema, "merged") == ["id", "v", "n"]

    # TRUNCATE and DROP of a shard leave the merged rows; a new shard's CREATE TABLE finds
    # the merged table there. Then the last shard drops `n`: now the merged table does.
    source1.execute(f"TRUNCATE TABLE {s1}.shard_2")
    source1.execute(f"DROP TABLE {s1}.shard_1")
    source1.execute(f"CREATE TABLE {s1}.shard_4 {make}")
    source1.execute(f"INSERT INTO {s1}.shard_4 VALUES (41, 'd')")
    source2.execute(f"ALTER TABLE {s1}.shard_3 DROP COLUMN n")
    source2.execute(f"INSERT INTO {s1}.shard_3 VALUES (35, 'c5')")
    want = [(1, "a"), (2, "b"), (3, "c"), (11, "a2"), (12, "b2"), (13, "a4"), (22, "b3"),
            (33, "c3"), (34, "c4"), (35, "c5"), (41, "d")]
    wait_synced(api, name, has(target, tschema, want))
    assert columns(target, tschema, "merged") == ["id", "v"]
    assert {str(r[2]) for r in target.query(f"SHOW INDEX FROM `{tschema}`.merged")} == {
        "PRIMARY", "ix_v"}

    # Narrowing a column on some shards waits for the rest: their rows must still fit.
    for t in ("shard_2", "shard_4"):
        source1.execute(f"ALTER TABLE {s1}.{t} MODIFY v VARCHAR(5)")
    source2.execute(f"INSERT INTO {s1}.shard_3 VALUES (36, 'twelve chars')")
    wait_synced(api, name, has(target, tschema, [(36, "twelve chars")], exact=False))
    [(v_type,)] = target.query("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE "
                               "TABLE_SCHEMA = %s AND TABLE_NAME = 'merged' AND "
                               "COLUMN_NAME = 'v'", (tschema,))
    assert v_type == "varchar(20)"

    # Renaming a column of one shard while others keep the old name: a conflict.
    source2.execute(f"ALTER TABLE {s1}.shard_3 RENAME COLUMN v TO w")
    for _ in range(300):
        data = api.get(f"/tasks/{q(name)}/status").json()["data"]
        paused = [d for d in data if d["stage"] == "Paused"]
        if paused:
            break
        time.sleep(0.2)
    assert [d["source_name"] for d in paused] == [src2], data
    assert "36102" in paused[0]["error_msg"] and "rename" in paused[0]["error_msg"].lower()
    assert columns(target, tschema, "merged") == ["id", "v"]
