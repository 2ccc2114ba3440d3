"""Helpers of the task tests through the HTTP API: task bodies, waiting for a stage or for
the sync to catch up, and reading what a server holds."""

from __future__ import annotations

import time
from typing import Any

import httpx

from testbed.mariadb import MariaDBServer
from tests.support.api import q


def wait_stage(api: httpx.Client, task: str, stage: str, timeout: float = 120.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    data: list[Any] = []
    while time.monotonic() < deadline:
        r = api.get(f"/tasks/{q(task)}/status")
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        if data and all(d["stage"] == stage for d in data):
            return data
        if any(d["stage"] == "Paused" and d.get("error_msg") for d in data) and stage != "Paused":
            raise AssertionError(f"paused with error: {data}")
        time.sleep(0.3)
    raise AssertionError(f"task {task} not {stage} in {timeout} s: {data}")


def task_body(name: str, target: MariaDBServer, sources: list[str], schema: str,
              target_schema: str, mode: str = "full", **full_conf: Any) -> dict[str, Any]:
    return {"task": {
        "name": name, "task_mode": mode, "meta_schema": "dm_meta",
        "enhance_online_schema_change": True, "on_duplicate": "error",
        "target_config": {"host": target.host, "port": target.port, "user": target.user,
                          "password": target.password},
        "table_migrate_rule": [
            {"source": {"source_name": s, "schema": schema, "table": "*"},
             "target": {"schema": target_schema}} for s in sources],
        "source_config": {
            "full_migrate_conf": {"export_threads": 2, "import_threads": 2, **full_conf},
            "source_conf": [{"source_name": s} for s in sources]},
        "ignore_checking_items": ["version"],
    }}


def table_digest(server: MariaDBServer, schema: str, table: str) -> tuple[int, str]:
    rows = server.query(f"SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', id, k, c, "
                        f"HEX(b)))), 0) FROM `{schema}`.`{table}`")
    return int(rows[0][0]), str(rows[0][1])


def master_pos(server: MariaDBServer) -> tuple[str, int]:
    [row] = server.query("SHOW MASTER STATUS")
    return str(row[0]), int(row[1])


def rows_of(server: MariaDBServer, schema: str, table: str) -> list[tuple[Any, ...]]:
    rows = server.query(f"SELECT * FROM `{schema}`.`{table}`")
    return sorted((tuple(r) for r in rows), key=repr)


def wait_synced(api: httpx.Client, task: str, check: Any = None,
                timeout: float = 90.0) -> list[dict[str, Any]]:
    """Until every subtask is Running in Sync, synced, and `check()` (if given) holds."""
    deadline = time.monotonic() + timeout
    data: list[dict[str, Any]] = []
    last_err: BaseException | None = None
    while time.monotonic() < deadline:
        data = api.get(f"/tasks/{q(task)}/status").json()["data"]
        for d in data:
            if d["stage"] == "Paused" and d.get("error_msg"):
                raise AssertionError(f"paused with error: {d}")
        if data and all(d["stage"] == "Running" and d["unit"] == "Sync"
                        and d.get("sync_status", {}).get("synced") for d in data):
            try:
                if check is not None:
                    check()
                return data
            except AssertionError as exc:
                last_err = exc
        time.sleep(0.3)
    raise AssertionError(f"task {task} not synced in {timeout} s: {data}; {last_err}")


def incr_body(name: str, target: MariaDBServer, sources: dict[str, tuple[str, int]],
              schema: str, target_schema: str, **extra: Any) -> dict[str, Any]:
    body = task_body(name, target, list(sources), schema, target_schema, mode="incremental")
    body["task"]["source_config"]["source_conf"] = [
        {"source_name": s, "binlog_name": f, "binlog_pos": p} for s, (f, p) in sources.items()]
    body["task"]["source_config"]["incr_migrate_conf"] = {"repl_threads": 4,
                                                          "repl_batch": 50}
    body["task"].update(extra)
    return body


def loading(api: httpx.Client, name: str) -> dict[str, Any]:
    """The status once some bytes are loaded (and so the load is under way)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st: dict[str, Any] = api.get(f"/tasks/{q(name)}/status").json()["data"][0]
        if st.get("load_status", {}).get("finished_bytes", 0) > 0:
            return st
        time.sleep(0.1)
    raise AssertionError("the load did not start")
