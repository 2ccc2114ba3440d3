"""The whole server stopped (Ray included) and started again on the same data dir: sources,
bindings, workers, masters, cluster info and API tokens come back from the event log.

This runs `dmray serve` as a user does, in its own process with its own local Ray. The
SQLite run comes back as an operator exposes a server: a token made with `dmray token
create` while it ran, then `--host 0.0.0.0` over TLS: HTTPS only, and only with the token.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from testbed.ports import free_port
from testbed.tls import make_tls
from tests.support.api import dmray_cli, source_body


def start_server(data_dir: Path, port: int, log: Path, store_url: str | None,
                 *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    store = ["--store-url", store_url] if store_url else []
    host = [] if "--host" in extra else ["--host", "127.0.0.1"]
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "serve_app.cli", "serve", "--data-dir", str(data_dir),
             "--port", str(port), "--num-cpus", "1", *host, *store, *extra],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path,
               timeout: float = 120.0, **client: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dmray serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            r = httpx.get(f"{base}/cluster/workers", timeout=5, **client)
            if r.status_code == 200 and sum(
                    w["bound_stage"] != "offline" for w in r.json()["data"]) >= 2:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"dmray serve not ready in {timeout} s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def observe(base: str, **client: Any) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=30, **client) as c:
        return {
            "sources": c.get("/sources", params={"with_status": True}).json(),
            "workers": [(w["name"], w["addr"], w["bound_source_name"])
                        for w in c.get("/cluster/workers").json()["data"]],
            "masters": [(m["name"], m["addr"], m["leader"])
                        for m in c.get("/cluster/masters").json()["data"]],
            "info": c.get("/cluster/info").json(),
        }


@pytest.mark.parametrize("store", ["sqlite", "mariadb"])
def test_restart_whole_server(tmp_path: Path, source1: MariaDBServer,
                              source2: MariaDBServer, target: MariaDBServer,
                              store: str) -> None:
    """Embedded SQLite log, and the server mode's shared MariaDB log (database created on
    first start)."""
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    store_url = None
    if store == "mariadb":
        db = f"dmray_log_{uuid.uuid4().hex[:8]}"
        store_url = target.url(db)
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    proc = start_server(data_dir, port, log, store_url)
    try:
        wait_ready(base, proc, log)
        with httpx.Client(base_url=base, timeout=30) as c:
            r = c.post("/sources", json={**source_body(source1, "keep-1"),
                                         "worker_name": "worker2"})
            assert r.status_code == 201, r.text
            assert c.post("/sources", json=source_body(source2, "keep-2")).status_code == 201
            r = c.post("/sources/keep-2/disable")
            assert r.status_code == 200, r.text
            assert c.put("/cluster/info", json={"grafana_topology": {
                "host": "10.1.1.1", "port": 3000}}).status_code == 200
        before = observe(base)
        again: list[str] = []
        client: dict[str, Any] = {}
        if store_url is None:  # back beyond loopback, over TLS, with a token made now
            made = dmray_cli("token", "create", "--name", "ops", "--data-dir", str(data_dir))
            assert made.returncode == 0, made.stderr
            tls = make_tls(tmp_path / "tls", "127.0.0.1")
            again = ["--host", "0.0.0.0", "--tls-cert", str(tls.cert), "--tls-key",
                     str(tls.key)]
            client = {"verify": ssl.create_default_context(cafile=str(tls.ca_cert)),
                      "headers": {"Authorization": f"Bearer {made.stdout.strip()}"}}
            base = base.replace("http://", "https://")
    finally:
        stop_server(proc)
    if store_url is None:
        assert (data_dir / "events.sqlite3").exists()
    else:
        assert not (data_dir / "events.sqlite3").exists()
        assert target.query(f"SELECT COUNT(*) FROM `{db}`.dmray_events")[0][0] >= 6

    proc = start_server(data_dir, port, log, store_url, *again)
    try:
        wait_ready(base, proc, log, **client)
        after = observe(base, **client)
        assert after == before
        assert after["sources"]["total"] == 2
        assert after["workers"][1][2] == "keep-1"
        with httpx.Client(base_url=base, timeout=30, **client) as c:
            # The stored, encrypted password still opens the upstream after the restart.
            assert "mysql" in c.get("/sources/keep-1/schemas").json()
            assert c.get("/sources/keep-2").json()["enable"] is False
        if client:
            refused = httpx.get(f"{base}/sources", verify=client["verify"], timeout=5)
            assert refused.status_code == 401 and refused.json()["error_code"] == 49401
            with pytest.raises(httpx.HTTPError):  # plain HTTP gets no answer from the TLS port
                httpx.get(base.replace("https://", "http://") + "/sources",
                          headers=client["headers"], timeout=5).raise_for_status()
    finally:
        stop_server(proc)
