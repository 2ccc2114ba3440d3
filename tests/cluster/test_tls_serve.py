"""`dmray serve` beyond loopback and over TLS, as an operator runs it: with a token in the
log it starts on 0.0.0.0; the API answers over HTTPS only, and only with the token."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from domain.cluster import ClusterState
from domain.tokens import make_token
from events.cluster import CLUSTER_STREAM, TokenCreated
from storage.aggregate import Aggregate
from storage.eventstore import EventStore, sqlite_url
from testbed.ports import free_port
from testbed.tls import make_tls

ROOT = Path(__file__).resolve().parents[2]


async def _seed_token(data_dir: Path, token_id: str, digest: str) -> None:
    """What `dmray token create` records, written to the log before the server starts."""
    store = EventStore(sqlite_url(data_dir))
    try:
        agg = Aggregate(store, CLUSTER_STREAM, ClusterState)
        await agg.load()
        await agg.record(TokenCreated(token_id=token_id, name="ops", digest=digest,
                                      created_at="2026-12-03T00:00:00+00:00"))
    finally:
        await store.close()


def test_https_beyond_loopback_with_a_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    token = make_token()
    asyncio.run(_seed_token(data, token.token_id, token.digest))
    tls = make_tls(tmp_path / "tls", "127.0.0.1")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serve_app.cli", "serve", "--data-dir", str(data),
             "--port", str(port), "--host", "0.0.0.0", "--num-cpus", "1",
             "--workers-per-node", "1", "--tls-cert", str(tls.cert),
             "--tls-key", str(tls.key)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    url = f"https://127.0.0.1:{port}/api/v1/cluster/workers"
    good = {"Authorization": f"Bearer {token.token}"}
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
        with httpx.Client(verify=ctx, timeout=5) as https:
            deadline = time.monotonic() + 150
            while True:
                assert proc.poll() is None, f"dmray serve exited:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"not ready:\n{log.read_text()[-3000:]}"
                try:
                    if https.get(url, headers=good).status_code == 200 \
                            and "serving the DM API" in log.read_text():
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            assert "https://0.0.0.0" in log.read_text()
            r = https.get(url)
            assert r.status_code == 401 and r.json()["error_code"] == 49401
            assert https.get(url, headers={
                "Authorization": f"Bearer {make_token().token}"}).status_code == 401
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/api/v1/cluster/workers",
                              headers=good, timeout=5)
            assert plain.status_code >= 400  # an HTTP request to the TLS port gets nothing
        except httpx.HTTPError:
            pass
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
