"""Every error is retryable or not, as DM's terror classes errors: a non-retryable one
pauses its subtask at once; a retryable one stays Running, shown in error_msg, and pauses
once RuntimeConfig.retry_timeout (RETRY_TIMEOUT_S in the tests) has passed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from errors import BINLOG_NO_START, BINLOG_READ, DB_DRIVER, SYNC_EXEC, DMError
from mysqlkit.retry import RetryClock, exhausted
from mysqlkit.upstream import driver_error
from testbed.mariadb import MariaDBServer
from tests.support.api import drop_tagged, q, source_body
from tests.support.fixtures_ray import RETRY_TIMEOUT_S
from tests.support.tasks import incr_body, master_pos, rows_of, task_body, wait_synced

# One retry interval: the longest backoff between two tries, plus status polling.
RETRY_INTERVAL_S = 8.0 + 2.0


@pytest.fixture
def tag(api: httpx.Client, source1: MariaDBServer, target: MariaDBServer) -> Iterator[str]:
    t = uuid.uuid4().hex[:6]
    yield t
    drop_tagged(api, t, source1, target)


def _status(api: httpx.Client, name: str) -> dict[str, Any]:
    [st] = api.get(f"/tasks/{q(name)}/status").json()["data"]
    return dict(st)


def _wait(api: httpx.Client, name: str, pred: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = _status(api, name)
        if pred(st):
            return st
        time.sleep(0.3)
    raise AssertionError(f"not reached in {timeout} s: {st}")


def _eq(a: Any, b: Any) -> None:
    assert a == b, (a, b)


# --- the classes themselves (no database) -------------------------------------------------
def test_error_classes_unit() -> None:
    assert BINLOG_READ("lost").retryable
    assert not BINLOG_NO_START("x").retryable
    assert not SYNC_EXEC("bad row").retryable
    # Driver errors by the server's errno: a lost connection heals, bad SQL does not.
    import pymysql

    assert driver_error(pymysql.err.OperationalError(2013, "Lost connection")).retryable
    assert driver_error(ConnectionRefusedError(111, "refused")).retryable
    assert not driver_error(pymysql.err.ProgrammingError(1064, "syntax")).retryable
    assert not driver_error(pymysql.err.OperationalError(1045, "Access denied")).retryable
    # Ray pickles errors across processes: the class survives.
    import pickle

    err = pickle.loads(pickle.dumps(DB_DRIVER(cause="x", retryable=True)))
    assert isinstance(err, DMError) and err.retryable
    assert not exhausted(err).retryable and str(exhausted(err)) == str(err)


def test_retry_clock_is_bounded_by_time() -> None:
    clock = RetryClock(0.3, backoff=(0.01, 0.05))
    assert clock.next_delay() == 0.01
    assert clock.next_delay() == 0.05
    time.sleep(0.35)
    assert clock.next_delay() is None
    clock.reset()
    assert clock.next_delay() == 0.01


# --- through the API ----------------------------------------------------------------------
def test_non_retryable_pauses_within_one_interval(api: httpx.Client, tag: str,
                                                  source1: MariaDBServer,
                                                  target: MariaDBServer) -> None:
    """A row that does not fit the structure the subtask tracks (taken from the target,
    which lacks a column): no retry can cure it."""
    schema, src, name = f"nr_{tag}", f"nrsrc-{tag}", f"nr-{tag}"
    source1.execute(f"CREATE DATABASE `{schema}`")
    source1.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT, w INT)")
    target.execute(f"CREATE DATABASE `{schema}`")
    target.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT)")
    assert api.post("/sources", json=source_body(source1, src)).status_code == 201
    body = incr_body(name, target, {src: master_pos(source1)}, schema, schema)
    assert api.post("/tasks", json=body).status_code == 201
    assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
    wait_synced(api, name)
    t0 = time.monotonic()
    source1.execute(f"INSERT INTO `{schema}`.t VALUES (1, 1, 1)")
    st = _wait(api, name, lambda s: s["stage"] == "Paused", RETRY_TIMEOUT_S)
    assert time.monotonic() - t0 < RETRY_INTERVAL_S, st
    assert st["error_msg"].startswith("[code=22104:"), st
    assert "the binlog has 3 columns, the schema 2" in st["error_msg"], st


def test_retryable_sync_error_shows_then_pauses(api: httpx.Client, tag: str,
                                                source1: MariaDBServer) -> None:
    """A target gone for good: Running with the error shown, then Paused after the bound."""
    schema, src, name = f"rt_{tag}", f"rtsrc-{tag}", f"rt-{tag}"
    tgt = MariaDBServer(251, name="gone-target").start()
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
        failed_at = time.monotonic()
        source1.execute(f"INSERT INTO `{schema}`.t VALUES (2, 2)")
        st = _wait(api, name, lambda s: bool(s.get("error_msg")), RETRY_TIMEOUT_S)
        assert st["stage"] == "Running" and st["error_msg"].startswith("[code="), st
        st = _wait(api, name, lambda s: s["stage"] == "Paused", RETRY_TIMEOUT_S * 3)
        waited = time.monotonic() - failed_at
        assert RETRY_TIMEOUT_S * 0.8 < waited < RETRY_TIMEOUT_S + 3 * RETRY_INTERVAL_S, waited
        assert st["error_msg"].startswith("[code="), st
    finally:
        api.delete(f"/tasks/{q(name)}", params={"force": True})
        tgt.stop()


def test_retryable_dump_error_shows_then_pauses(api: httpx.Client, tag: str,
                                                target: MariaDBServer) -> None:
    """A source unreachable when a full task starts: retried from the dump's checkpoints,
    shown meanwhile; paused after the bound; and it goes on once the source is back."""
    schema, src, name = f"rd_{tag}", f"rdsrc-{tag}", f"rd-{tag}"
    up = MariaDBServer(252, name="gone-source").start()
    try:
        up.execute(f"CREATE DATABASE `{schema}`")
        up.execute(f"CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT)")
        up.execute(f"INSERT INTO `{schema}`.t VALUES (1, 1), (2, 2)")
        assert api.post("/sources", json=source_body(up, src)).status_code == 201
        body = task_body(name, target, [src], schema, schema)
        assert api.post("/tasks", json=body).status_code == 201
        up.crash()
        t0 = time.monotonic()
        assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
        st = _wait(api, name, lambda s: bool(s.get("error_msg")), RETRY_TIMEOUT_S)
        assert st["stage"] == "Running" and st["error_msg"].startswith("[code=10001:"), st
        st = _wait(api, name, lambda s: s["stage"] == "Paused", RETRY_TIMEOUT_S * 3)
        waited = time.monotonic() - t0
        assert RETRY_TIMEOUT_S * 0.8 < waited < RETRY_TIMEOUT_S + 3 * RETRY_INTERVAL_S, waited
        up.restart()
        assert api.post(f"/tasks/{q(name)}/start", json={}).status_code == 200
        st = _wait(api, name, lambda s: s["stage"] in ("Finished", "Paused"), 60)
        assert st["stage"] == "Finished" and not st.get("error_msg"), st
        assert rows_of(target, schema, "t") == [(1, 1), (2, 2)]
    finally:
        api.delete(f"/tasks/{q(name)}", params={"force": True})
        up.stop()
        target.execute(f"DROP DATABASE IF EXISTS `{schema}`")
