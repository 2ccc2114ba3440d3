"""Full migration, dmray against mydumper + myloader, side by side in one run.

    .venv/bin/python bench/full.py                       # 8 tables x 250,000 rows, 4 threads
    .venv/bin/python bench/full.py --tables 2 --rows 50000

Starts a private source and a private target MariaDB (same settings, binlog on, as the
tests do), fills the source with sysbench-shaped tables, then times
  (a) dmray: a `full` task with export_threads = import_threads = --threads, from the
      start call until the subtask is Finished (the server is already running);
  (b) mydumper -t N into a directory, then myloader -t N into another target schema,
      twice: with `-e` (the restore is binlogged on the target, as dmray's is: the
      like-for-like peer) and with myloader's default, which runs SET SQL_LOG_BIN=0
      (Debian's mydumper package; `apt-get install mydumper`).
Each target is verified against the source with CHECKSUM TABLE and its indexes
(information_schema.STATISTICS). Prints a markdown table
with wall seconds, rows/s, MB/s, the CPU seconds each side cost (source server, target
server, the tool's own processes), the target binlog bytes written, and the ratios of
wall times (dmray / peer).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
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

from bench.common_repl import start_dmray  # noqa: E402
from serve_app.procfs import descendants, read_stat, start_time  # noqa: E402
from testbed.mariadb import MariaDBServer, start_servers  # noqa: E402
from testbed.ports import free_port  # noqa: E402

SCHEMA = "sbtest"


def cpu_s(pid: int, children: bool = False) -> float:
    """utime + stime of a process (and of its reaped children)."""
    st = read_stat(pid)
    return 0.0 if st is None else st.cpu_s(children)


def started_tree(root: int) -> dict[int, str]:
    """pid -> start time of every living descendant of `root`, itself included."""
    return {pid: t for pid in [root, *descendants(root)] if (t := start_time(pid)) is not None}


def tree_cpu_s(root: int) -> float:
    return sum(cpu_s(pid, children=True) for pid in started_tree(root))


def binlog_bytes(server: MariaDBServer) -> int:
    return sum(int(r[1]) for r in server.query("SHOW BINARY LOGS"))


class Cpu:
    """CPU seconds of the source and target servers and of the tool over a timed span."""

    def __init__(self, src: MariaDBServer, tgt: MariaDBServer):
        self.src, self.tgt = src, tgt
        self.source = self.target = self.tool = 0.0

    def start(self, tool: float = 0.0) -> None:
        assert self.src.pid is not None and self.tgt.pid is not None
        self._t0 = (cpu_s(self.src.pid), cpu_s(self.tgt.pid), tool)

    def stop(self, tool: float = 0.0) -> None:
        assert self.src.pid is not None and self.tgt.pid is not None
        self.source += cpu_s(self.src.pid) - self._t0[0]
        self.target += cpu_s(self.tgt.pid) - self._t0[1]
        self.tool += tool - self._t0[2]


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


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


def indexes(server: MariaDBServer, schema: str) -> list[tuple[object, ...]]:
    """Every index of the schema's tables, column by column (dmray adds plain secondary
    indexes after the rows: they must all be there at the end)."""
    return [tuple(r) for r in server.query(
        "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, SUB_PART, "
        "INDEX_TYPE FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
        "ORDER BY 1, 2, 3", (schema,))]


def run_dmray(src: MariaDBServer, tgt: MariaDBServer, threads: int, cpu: Cpu) -> float:
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
        cpu.start(tree_cpu_s(proc.pid))
        t0 = time.perf_counter()
        assert c.post("/tasks/bench-full/start").status_code == 200
        while True:
            st = c.get("/tasks/bench-full/status").json()["data"][0]
            if st["stage"] == "Finished":
                wall = time.perf_counter() - t0
                cpu.stop(tree_cpu_s(proc.pid))
                return wall
            if st["stage"] == "Paused":
                raise SystemExit(f"dmray paused: {st.get('error_msg')}")
            time.sleep(0.1)
    finally:
        tree = started_tree(proc.pid)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        # Some of Ray's helpers (Serve's HAProxy) live in sessions of their own and would
        # outlive the server: stop those of this run (same pid and start time) too.
        time.sleep(1)
        for pid, started in started_tree(1).items():
            if tree.get(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def run_mydumper(src: MariaDBServer, threads: int, cpu: Cpu) -> tuple[str, float]:
    out = tempfile.mkdtemp(prefix="mydumper-bench-")
    shutil.rmtree(out)
    cpu.start(children_cpu_s())
    t0 = time.perf_counter()
    subprocess.run(["mydumper", "-h", src.host, "-P", str(src.port), "-u", src.user,
                    "-p", src.password, "-B", SCHEMA, "-t", str(threads), "-o", out],
                   check=True, capture_output=True)
    dump_s = time.perf_counter() - t0
    cpu.stop(children_cpu_s())
    return out, dump_s


def run_myloader(tgt: MariaDBServer, dump_dir: str, schema: str, threads: int,
                 binlog: bool, cpu: Cpu) -> float:
    cpu.start(children_cpu_s())
    t0 = time.perf_counter()
    subprocess.run(["myloader", "-h", tgt.host, "-P", str(tgt.port), "-u", tgt.user,
                    "-p", tgt.password, "-d", dump_dir, "-B", schema,
                    "-t", str(threads), "-o", *(["-e"] if binlog else [])],
                   check=True, capture_output=True)
    load_s = time.perf_counter() - t0
    cpu.stop(children_cpu_s())
    return load_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", type=int, default=8)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    if shutil.which("mydumper") is None:
        raise SystemExit("mydumper is needed: apt-get install mydumper")
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    src, tgt = start_servers([801, 802], names=["bench-source", "bench-target"])
    rows: list[tuple[str, float, str, Cpu, int, bool]] = []
    try:
        fill(src, args.tables, args.rows)
        total_rows = args.tables * args.rows
        size = int(src.query(f"SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES "
                             f"WHERE TABLE_SCHEMA='{SCHEMA}'")[0][0])
        expect = checksums(src, SCHEMA, args.tables)
        expect_ix = indexes(src, SCHEMA)

        cpu, b0 = Cpu(src, tgt), binlog_bytes(tgt)
        dm_s = run_dmray(src, tgt, args.threads, cpu)
        rows.append(("dmray full task", dm_s, "", cpu, binlog_bytes(tgt) - b0,
                     checksums(tgt, "dmray_" + SCHEMA, args.tables) == expect
                     and indexes(tgt, "dmray_" + SCHEMA) == expect_ix))
        dump_cpu = Cpu(src, tgt)
        dump_dir, dump_s = run_mydumper(src, args.threads, dump_cpu)
        for binlog, schema, label in ((True, "myloader_e_", "mydumper + myloader -e"),
                                      (False, "myloader_", "mydumper + myloader")):
            cpu = Cpu(src, tgt)
            cpu.source, cpu.target, cpu.tool = dump_cpu.source, dump_cpu.target, dump_cpu.tool
            b0 = binlog_bytes(tgt)
            load_s = run_myloader(tgt, dump_dir, schema + SCHEMA, args.threads, binlog, cpu)
            rows.append((label, dump_s + load_s, f" (dump {dump_s:.1f} + load {load_s:.1f})",
                         cpu, binlog_bytes(tgt) - b0,
                         checksums(tgt, schema + SCHEMA, args.tables) == expect
                         and indexes(tgt, schema + SCHEMA) == expect_ix))
        shutil.rmtree(dump_dir, ignore_errors=True)
    finally:
        src.stop()
        tgt.stop()
    mb = size / 1e6
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; {args.tables} tables x {args.rows} rows "
          f"({total_rows} rows, {mb:.0f} MB of InnoDB data), {args.threads} threads; "
          f"load average before: {load_before}")
    print("| tool | wall s | rows/s | MB/s | CPU s: source / target / tool | "
          "target binlog MB | CHECKSUM TABLE and indexes equal |")
    print("|---|---|---|---|---|---|---|")
    for label, wall, detail, cpu, blog, ok in rows:
        print(f"| {label} | {wall:.1f}{detail} | {total_rows / wall:,.0f} | {mb / wall:.1f} | "
              f"{cpu.source:.1f} / {cpu.target:.1f} / {cpu.tool:.1f} | {blog / 1e6:.0f} | "
              f"{'yes' if ok else 'NO'} |")
    dm_s = rows[0][1]
    print(f"\nratio dmray / (mydumper + myloader -e) wall time: {dm_s / rows[1][1]:.2f}")
    print(f"ratio dmray / (mydumper + myloader, no target binlog) wall time: "
          f"{dm_s / rows[2][1]:.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
