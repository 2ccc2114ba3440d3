"""Helpers for API tests: DM error assertions, source bodies, the `dmray` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from testbed.mariadb import MariaDBServer


def assert_dm_error(resp: httpx.Response, code: int, *fragments: str) -> dict[str, Any]:
    assert resp.status_code == 400, (resp.status_code, resp.text)
    body: dict[str, Any] = resp.json()
    assert set(body) == {"error_msg", "error_code"}, body
    assert body["error_code"] == code, body
    assert body["error_msg"].startswith(f"[code={code}:class="), body
    assert ", Message: " in body["error_msg"], body
    for f in fragments:
        assert f in body["error_msg"], (f, body)
    assert "Traceback" not in body["error_msg"]
    return body


def source_body(server: MariaDBServer, name: str, **extra: Any) -> dict[str, Any]:
    src = {"source_name": name, "host": server.host, "port": server.port,
           "user": server.user, "password": server.password, "enable_gtid": False,
           "enable": True}
    src.update(extra)
    return {"source": src}


def q(name: str) -> str:
    """A name as a path segment."""
    return quote(name, safe="")


def drop_test_objects(api: httpx.Client, source: MariaDBServer, target: MariaDBServer,
                      source_name: str, schema: str, tag: str) -> None:
    """A task-test fixture's teardown: every task (forced), the source, the source schema,
    and the target databases whose names hold `tag`."""
    for t in api.get("/tasks").json()["data"]:
        api.delete(f"/tasks/{q(t['name'])}", params={"force": True})
    api.delete(f"/sources/{q(source_name)}", params={"force": True})
    source.execute(f"DROP DATABASE IF EXISTS `{schema}`")
    for s in target.query(f"SHOW DATABASES LIKE '%{tag}%'"):
        target.execute(f"DROP DATABASE IF EXISTS `{s[0]}`")


def drop_tagged(api: httpx.Client, tag: str, *servers: MariaDBServer) -> None:
    """Teardown of a test that names what it makes `...<tag>`: every task (forced), the
    sources and the databases on `servers` whose names end with `tag`."""
    for task in api.get("/tasks").json()["data"]:
        api.delete(f"/tasks/{q(task['name'])}", params={"force": True})
    for s in api.get("/sources").json()["data"]:
        if s["source_name"].endswith(tag):
            api.delete(f"/sources/{q(s['source_name'])}", params={"force": True})
    for server in servers:
        for (db,) in server.query("SHOW DATABASES"):
            if str(db).endswith(tag):
                server.execute(f"DROP DATABASE `{db}`")


ROOT = Path(__file__).resolve().parents[2]


def dmray_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`dmray ARGS` as a user runs it, from the checkout (not told the test session's Ray:
    it finds a cluster by --address or --data-dir)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "serve_app.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
