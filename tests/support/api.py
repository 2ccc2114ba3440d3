"""Helpers for API tests: DM error assertions and source bodies."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tests.support.mariadb import MariaDBServer


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
