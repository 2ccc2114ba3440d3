"""API latency: p50/p99 of GET /api/v1/sources and GET /api/v1/cluster/workers with 20
concurrent clients. Goal on this 2-core machine: p99 < 50 ms.

    .venv/bin/python bench/api.py                  # starts its own MariaDB and dmray
    .venv/bin/python bench/api.py --url http://127.0.0.1:8261

The load comes from wrk (`apt-get install wrk`; C, so the client takes little of the two
cores), 20 connections on 2 threads, for --seconds per endpoint after a warm-up. By
default it starts a private MariaDB and `dmray serve` on a free port with a fresh data
dir, creates --sources sources, measures, and then does the same with Ray Serve's default
ingress (its Python proxy actor) for comparison. DM publishes no figure for these calls,
so the goal is the yardstick.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENDPOINTS = ("/api/v1/sources", "/api/v1/cluster/workers")
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, clients: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True).stdout
    res: dict[str, float] = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        res[f"p{pct}"] = float(m.group(1)) * _UNIT[m.group(2)]
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["errors"] = float(m.group(1)) if m else 0.0
    return res


def start_server(port: int, data_dir: str, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(extra_env, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "serve_app.cli", "serve", "--data-dir", data_dir,
         "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wait_ready(base: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{base}/api/v1/cluster/workers", timeout=5)
            if r.status_code == 200 and r.json()["data"] and all(
                    w["bound_stage"] != "offline" for w in r.json()["data"]):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("dmray did not come up")


def measure(label: str, base: str, args: argparse.Namespace) -> list[str]:
    rows = []
    for path in ENDPOINTS:
        wrk(base + path, 3, args.clients)  # warm-up
        r = wrk(base + path, args.seconds, args.clients)
        ok = "met" if r["p99"] < 50 and not r["errors"] else "missed"
        rows.append(f"| {label} | GET {path} | {r['requests']:.0f} | {r['errors']:.0f} | "
                    f"{r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {ok} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", help="an already running dmray; default: start one")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--sources", type=int, default=3)
    ap.add_argument("--no-compare", action="store_true",
                    help="skip the run with Ray Serve's default proxy")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    from testbed.mariadb import MariaDBServer
    from testbed.ports import free_port

    db = MariaDBServer(server_id=901, name="bench-api").start() if args.sources else None
    runs: list[tuple[str, dict[str, str]]] = [("dmray (HAProxy ingress)", {})]
    if not args.no_compare and not args.url:
        runs.append(("dmray on Serve's default proxy", {
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0", "RAY_SERVE_ENABLE_HA_PROXY": "0"}))
    rows: list[str] = []
    try:
        for label, env in runs:
            proc = None
            base = args.url
            try:
                if base is None:
                    port = free_port()
                    base = f"http://127.0.0.1:{port}"
                    proc = start_server(port, tempfile.mkdtemp(prefix="dmray-bench-"), env)
                    wait_ready(base)
                for i in range(args.sources if db else 0):
                    assert db is not None
                    r = httpx.post(f"{base}/api/v1/sources", timeout=60, json={"source": {
                        "source_name": f"bench-{i}", "host": db.host, "port": db.port,
                        "user": db.user, "password": db.password}})
                    if r.status_code not in (201, 400):
                        raise SystemExit(r.text)
                rows += measure(label, base, args)
            finally:
                if proc is not None:
                    stop_server(proc)
    finally:
        if db is not None:
            db.stop()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; wrk -t2 -c{args.clients} -d{args.seconds}s; "
          f"{args.sources} sources")
    print("| server | endpoint | requests | non-2xx | req/s | p50 ms | p99 ms | p99 < 50 ms |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
