"""Full migration, dmray against mydumper + myloader, side by side in one run.

    .venv/bin/python bench/full.py                       # 8 tables x 250,000 rows, 4 threads
    .venv/bin/python bench/full.py --tables 2 --rows 50000

Starts a private source and a private target MariaDB (same settings, binlog on, as the
tests do), fills the source with sysbench-shaped tables, then times
  (a) dmray: a `full` task with export_threads = import_threads = --threads, from the
      start call until the subtask is Finished (the server is already running);
  (b) mydumper -t N into a directory, then myloader -t N into another target schema
      (Debian's mydumper package; `apt-get install mydumper`).
Each target is verified against the source with CHECKSUM TABLE. Prints a markdown table
with wall seconds, rows/s, MB/s and the ratio of wall times (dmray / peer).
"""

from __future__ import annotations

import argparse
import os
import platform
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

from tests.support.fixtures_ray import free_port  # noqa: E402
from tests.support.mariadb import MariaDBServer, start_servers  # noqa: E402

SCHEMA = "sbtest"


def fill(src: MariaDBServer, tables: int, rows: int) -> None:
    src.execute(f"CREATE DATABASE {SCHEMA}")
    for i in range(1, tables + 1):
        src.execute(f"CREATE TABLE {SCHEMA}.sbtest{i} (id INT NOT NULL AUTO_INCREMENT, "
                    "k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', "
                    "pad CHAR(60) NOT NULL DEFAULT '', PRIMARY KEY (id), KEY k_1 (k)) "
                    "ENGINE=InnoDB")
        # sysbench's shapes: c is 10 groups of 11 digits, pad 5 groups.
        c = "CONCAT_WS('-', " + ", ".join(["LPAD(FLOOR(RAND()*99999999999), 11, '0')"] * 10) + ")"
        pad = "CONCAT_WS('-', " + ", ".join(["LPAD(FLOOR(RAND()*99999999999), 11, '0')"] * 5) + ")"
        src.execute(f"INSERT INTO {SCHEMA}.sbtest{i} (id, k, c, pad) SELECT seq, "
                    f"FLOOR(RAND()*{rows}), {c}, {pad} FROM {SCHEMA}.seq_1_to_{rows}")


def checksums(server: MariaDBServer, schema: str, tables: int) -> list[int]:
    names = ", ".join(f"`{schema}`.sbtest{i}" for i in range(1, tables + 1))
    return [int(r[1]) for r in server.query(f"CHECKSUM TABLE {names}")]


def start_dmray(port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "serve_app.cli", "serve", "--data-dir",
         tempfile.mkdtemp(prefix="dmray-bench-"), "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def run_dmray(src: MariaDBServer, tgt: MariaDBServer, threads: int) -> float:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    proc = start_dmray(port)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                r = httpx.get(f"{base}/cluster/workers", timeout=5)
                if r.status_code == 200 and r.json()["total"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("dmray did not start")
            time.sleep(0.5)
        c = httpx.Client(base_url=base, timeout=120)
        r = c.post("/sources", json={"source": {"source_name": "bench-src", "host": src.host,
                                                "port": src.port, "user": src.user,
                                                "password": src.password}})
        assert r.status_code == 201, r.text
        task = {"name": "bench-full", "task_mode": "full", "on_duplicate": "error",
                "enhance_online_schema_change": True,
                "target_config": {"host": tgt.host, "port": tgt.port, "user": tgt.user,
                                  "password": tgt.password},
                "table_migrate_rule": [{"source": {"source_name": "bench-src",
                                                   "schema": SCHEMA, "table": "*"},
                                        "target": {"schema": "dmray_" + SCHEMA}}],
                "source_config": {"full_migrate_conf": {"export_threads": threads,
                                                        "import_threads": threads},
                                  "source_conf": [{"source_name": "bench-src"}]},
                "ignore_checking_items": ["all"]}
        r = c.post("/tasks", json={"task": task})
        assert r.status_code == 201, r.text
        t0 = time.perf_counter()
        assert c.post("/tasks/bench-full/start").status_code == 200
        while True:
            st = c.get("/tasks/bench-full/status").json()["data"][0]
            if st["stage"] == "Finished":
                return time.perf_counter() - t0
            if st["stage"] == "Paused":
                raise SystemExit(f"dmray paused: {st.get('error_msg')}")
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def run_mydumper(src: MariaDBServer, tgt: MariaDBServer, threads: int) -> tuple[float, float]:
    out = tempfile.mkdtemp(prefix="mydumper-bench-")
    shutil.rmtree(out)
    t0 = time.perf_counter()
    subprocess.run(["mydumper", "-h", src.host, "-P", str(src.port), "-u", src.user,
                    "-p", src.password, "-B", SCHEMA, "-t", str(threads), "-o", out],
                   check=True, capture_output=True)
    dump_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(["myloader", "-h", tgt.host, "-P", str(tgt.port), "-u", tgt.user,
                    "-p", tgt.password, "-d", out, "-B", "mydumper_" + SCHEMA,
                    "-t", str(threads), "-o"], check=True, capture_output=True)
    load_s = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return dump_s, load_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", type=int, default=8)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    if shutil.which("mydumper") is None:
        raise SystemExit("mydumper is needed: apt-get install mydumper")
    src, tgt = start_servers([801, 802], names=["bench-source", "bench-target"])
    try:
        fill(src, args.tables, args.rows)
        total_rows = args.tables * args.rows
        size = int(src.query(f"SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES "
                             f"WHERE TABLE_SCHEMA='{SCHEMA}'")[0][0])
        expect = checksums(src, SCHEMA, args.tables)

        dm_s = run_dmray(src, tgt, args.threads)
        dm_ok = checksums(tgt, "dmray_" + SCHEMA, args.tables) == expect
        dump_s, load_s = run_mydumper(src, tgt, args.threads)
        peer_s = dump_s + load_s
        peer_ok = checksums(tgt, "mydumper_" + SCHEMA, args.tables) == expect
    finally:
        src.stop()
        tgt.stop()
    mb = size / 1e6
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; {args.tables} tables x {args.rows} rows "
          f"({total_rows} rows, {mb:.0f} MB of InnoDB data), {args.threads} threads")
    print("| tool | wall s | rows/s | MB/s | CHECKSUM TABLE equal |")
    print("|---|---|---|---|---|")
    print(f"| dmray full task | {dm_s:.1f} | {total_rows / dm_s:,.0f} | {mb / dm_s:.1f} | "
          f"{'yes' if dm_ok else 'NO'} |")
    print(f"| mydumper + myloader | {peer_s:.1f} (dump {dump_s:.1f} + load {load_s:.1f}) | "
          f"{total_rows / peer_s:,.0f} | {mb / peer_s:.1f} | {'yes' if peer_ok else 'NO'} |")
    print(f"\nratio dmray / mydumper+myloader wall time: {dm_s / peer_s:.2f}")


if __name__ == "__main__":
    main()
