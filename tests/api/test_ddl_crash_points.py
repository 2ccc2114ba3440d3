"""Kills placed on purpose around DDLs (mysqlkit.faults crash points in the sync worker):
just before the DDL runs on the target, after it ran but before its checkpoint, and after
the checkpoint. Rows written with the old structure just before each DDL, and with the new
one just after, must all arrive once the replaced worker resumes, with no pause."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mysqlkit.faults import arm
from testbed.mariadb import MariaDBServer
from tests.support.api import drop_tagged, q, source_body
from tests.support.compare import wait_until_equal
from tests.support.fixtures_ray import DMServer
from tests.support.tasks import incr_body, master_pos, wait_synced

POINTS = ("syncer.ddl.before", "syncer.ddl.after_exec", "syncer.ddl.after_checkpoint")


@pytest.fixture
def tag(api: httpx.Client, source1: MariaDBServer, target: MariaDBServer) -> Iterator[str]:
    t = uuid.uuid4().hex[:6]
    yield t
    drop_tagged(api, t, source1, target)


def _consumed(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"crash point {path.name} never reached"
        time.sleep(0.1)


@pytest.mark.parametrize("point", POINTS)
def test_kill_around_ddl(api: httpx.Client, dm_server: DMServer, tag: str, point: str,
                         source1: MariaDBServer, target: MariaDBServer) -> None:
    schema, src, name = f"dk_{tag}", f"dksrc-{tag}", f"dk-{tag}"
    pos = master_pos(source1)  # the CREATEs replicate too
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT, x3 INT)")
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    body = incr_body(name, target, {src: pos}, schema, schema)
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    t = f"`{schema}`.t"
    source1.execute(f"INSERT INTO {t} VALUES (1, 1, 1)")
    wait_synced(api, name)
    wait_until_equal(source1, target, [((schema, "t"), (schema, "t"))], timeout=60)

    ddls = [
        # rows with x3 just before it is dropped (the window of the 1054 replay)
        (f"INSERT INTO {t} VALUES (10, 10, 10), (11, 11, 11)",
         f"ALTER TABLE {t} DROP COLUMN x3",
         f"INSERT INTO {t} (id, v) VALUES (12, 12)"),
        (f"UPDATE {t} SET v = v + 1",
         f"ALTER TABLE {t} ADD COLUMN x4 VARCHAR(8) DEFAULT 'd'",
         f"INSERT INTO {t} VALUES (13, 13, 'x')"),
        (f"DELETE FROM {t} WHERE id = 10",
         f"ALTER TABLE {t} MODIFY COLUMN v BIGINT",
         f"INSERT INTO {t} VALUES (14, 12345678901, 'y')"),
        (f"INSERT INTO {t} VALUES (15, 15, 'z')",
         f"CREATE TABLE `{schema}`.u (id INT PRIMARY KEY, w INT)",
         f"INSERT INTO `{schema}`.u VALUES (1, 1)"),
    ]
    for before, ddl, after in ddls:
        fault = arm(dm_server.cfg.fault_dir, point)
        source1.execute(before)
        source1.execute(ddl)
        source1.execute(after)
        _consumed(fault)
    pairs = [((schema, "t"), (schema, "t")), ((schema, "u"), (schema, "u"))]
    wait_until_equal(source1, target, pairs, timeout=120)
    [st] = wait_synced(api, name, timeout=120)
    assert st["stage"] == "Running" and not st.get("error_msg"), st
    cols = [r[0] for r in target.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
        "TABLE_NAME = 't' ORDER BY ORDINAL_POSITION", (schema,))]
    assert cols == ["id", "v", "x4"], cols
    api.delete(f"/tasks/{q(name)}", params={"force": True})
