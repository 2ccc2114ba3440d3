"""Replication lag under a steady write load: dmray's reported seconds_behind_master and the
true lag measured with a heartbeat row.

    .venv/bin/python bench/lag.py                        # dmray, 5,000 row events/s, 60 s
    .venv/bin/python bench/lag.py --mode native          # MariaDB's own replication
    .venv/bin/python bench/lag.py --mode load --duration 10   # the load alone

Starts a private source and target MariaDB and creates --tables sysbench-shaped tables
and a `heartbeat (id INT PK, ts DATETIME(6))` table on the source, with empty copies on
the target; replication starts at the source's binlog position after that:
  dmray:  a `dmray serve` process, an `incremental` task from that position into
          dmray_sbtest (the clock starts once the subtask is Running);
  native: CHANGE MASTER TO the position, START SLAVE (slave_parallel_threads =
          --repl-threads, optimistic), into sbtest;
  load:   no replication; only the load, to see what rate this machine can write.
Then for --duration seconds a seeded load writes --rate row events/s (70 % insert, 20 %
update, 10 % delete, transactions of --txn-rows), while
  - the source's heartbeat row is set to NOW(6) every --heartbeat-ms (UTC session);
  - the target's heartbeat row is read every --probe-ms: each new value seen gives a true
    lag = time seen - its source time (an upper bound, by at most one probe interval);
  - seconds_behind_master is polled every --status-interval s (dmray: GET
    /api/v1/tasks/{t}/status sync_status; native: SHOW SLAVE STATUS).
The probes go on after the load until the last heartbeat arrived (or --catchup-timeout),
then the copy is verified with CHECKSUM TABLE. Prints p50/p99/max of both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common_repl import (  # noqa: E402
    SCHEMA,
    Dmray,
    RowWriter,
    checksums,
    create_tables,
    master_position,
    percentile,
    slave_status,
    start_dmray,
    start_native,
    stop_dmray,
    stop_native,
)
from testbed.mariadb import MariaDBServer, start_servers  # noqa: E402
from testbed.ports import free_port  # noqa: E402

TASK = "bench-lag"
HEARTBEAT_DDL = "CREATE TABLE heartbeat (id INT NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL)"


class Poller:
    """Calls `fn` every `interval` seconds in a thread until stop(); keeps the first error."""

    def __init__(self, interval: float, fn: Callable[[], None]) -> None:
        self.interval = interval
        self.fn = fn
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                self.fn()
                next_at += self.interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Heartbeat:
    """Writes the source row; `last` is the newest source time written."""

    def __init__(self, src: MariaDBServer) -> None:
        self.conn = src.connect(SCHEMA)
        with self.conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute("REPLACE INTO heartbeat VALUES (1, NOW(6))")
        self.last: dt.datetime | None = None
        self.beats = 0

    def beat(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("UPDATE heartbeat SET ts = NOW(6) WHERE id = 1")
            cur.execute("SELECT ts FROM heartbeat WHERE id = 1")
            row = cur.fetchone()
        self.last = row[0] if row else None
        self.beats += 1


class Probe:
    """Reads the target row; records the lag of each new heartbeat value it sees."""

    def __init__(self, tgt: MariaDBServer, schema: str) -> None:
        self.conn = tgt.connect()
        self.schema = schema
        self.seen: dt.datetime | None = None
        self.lags_ms: list[float] = []

    def probe(self) -> None:
        with self.conn.cursor() as cur:
            try:
                cur.execute(f"SELECT ts FROM `{self.schema}`.heartbeat WHERE id = 1")
            except Exception as exc:  # the table may not exist yet on the target
                if "doesn't exist" in str(exc):
                    return
                raise
            row = cur.fetchone()
        now = utc_now()
        if row and row[0] != self.seen:
            self.seen = row[0]
            self.lags_ms.append((now - row[0]).total_seconds() * 1000)


def dmray_sbm(api: Dmray) -> Any:
    return (api.subtask_status(TASK).get("sync_status") or {}).get("seconds_behind_master")


def native_sbm(replica: MariaDBServer) -> Any:
    return slave_status(replica).get("Seconds_Behind_Master")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["dmray", "native", "load"], default="dmray")
    ap.add_argument("--rate", type=float, default=5000, help="row events/s")
    ap.add_argument("--duration", type=float, default=60, help="seconds of load")
    ap.add_argument("--tables", type=int, default=4)
    ap.add_argument("--txn-rows", type=int, default=50, help="row events per transaction")
    ap.add_argument("--repl-threads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100, help="dmray repl_batch")
    ap.add_argument("--heartbeat-ms", type=float, default=100)
    ap.add_argument("--probe-ms", type=float, default=50)
    ap.add_argument("--status-interval", type=float, default=0.5)
    ap.add_argument("--catchup-timeout", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    src, tgt = start_servers([821, 822], names=["bench-lag-source", "bench-lag-target"])
    tgt_schema = "dmray_" + SCHEMA if args.mode == "dmray" else SCHEMA
    tables = [f"sbtest{i}" for i in range(1, args.tables + 1)]
    dmray_proc = None
    sbm: list[float] = []
    probe: Probe | None = None
    ok: bool | None = None
    try:
        create_tables(src, SCHEMA, args.tables, [HEARTBEAT_DDL])
        start = master_position(src)
        status_fn: Callable[[], Any] | None = None
        if args.mode != "load":
            create_tables(tgt, tgt_schema, args.tables, [HEARTBEAT_DDL])
        if args.mode == "dmray":
            port = free_port()
            dmray_proc = start_dmray(port)
            api = Dmray(f"http://127.0.0.1:{port}/api/v1")
            api.wait_ready()
            api.create_source("bench-src", src)
            api.create_incremental_task(TASK, "bench-src", tgt, SCHEMA, tgt_schema, start,
                                        repl_threads=args.repl_threads, batch=args.batch)
            api.start_task(TASK)
            while api.subtask_status(TASK).get("stage") != "Running":
                time.sleep(0.2)
            status_fn = functools.partial(dmray_sbm, api)
        elif args.mode == "native":
            start_native(tgt, src, start, args.repl_threads)
            status_fn = functools.partial(native_sbm, tgt)

        def poll_status() -> None:
            if status_fn is not None and (v := status_fn()) is not None:
                sbm.append(float(v))

        heartbeat = Heartbeat(src)
        pollers = [Poller(args.heartbeat_ms / 1000, heartbeat.beat)]
        if args.mode != "load":
            probe = Probe(tgt, tgt_schema)
            pollers += [Poller(args.probe_ms / 1000, probe.probe),
                        Poller(args.status_interval, poll_status)]
        writer = RowWriter(src, SCHEMA, args.tables, seed=args.seed, txn_rows=args.txn_rows)
        load_s = writer.run_paced(args.rate, args.duration)
        pollers[0].stop()  # no more heartbeats; the probes wait for the last one
        print(f"load: {writer.events:,} row events in {load_s:.1f} s "
              f"({writer.events / load_s:,.0f}/s; target {args.rate:,.0f}/s); "
              f"{heartbeat.beats} heartbeats", flush=True)
        if probe is not None:
            deadline = time.monotonic() + args.catchup_timeout
            while probe.seen != heartbeat.last and time.monotonic() < deadline:
                time.sleep(0.1)
            caught_up = probe.seen == heartbeat.last
            for p in pollers[1:]:
                p.stop()
            if not caught_up:
                print(f"target did not catch up within {args.catchup_timeout:.0f}s")
            else:
                # The last heartbeat came after the last load transaction: all applied.
                ok = checksums(tgt, tgt_schema, tables) == checksums(src, SCHEMA, tables)
    finally:
        if dmray_proc is not None:
            stop_dmray(dmray_proc)
        if args.mode == "native" and tgt.running:
            stop_native(tgt)
        src.stop()
        tgt.stop()

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; {args.tables} tables, transactions of "
          f"{args.txn_rows}; heartbeat every {args.heartbeat_ms:.0f} ms, probe every "
          f"{args.probe_ms:.0f} ms; repl threads {args.repl_threads}")
    print("| replication | row events/s (target) | row events | seconds_behind_master "
          "p50 / p99 / max s | true lag p50 / p99 / max ms | heartbeats seen | "
          "CHECKSUM TABLE equal |")
    print("|---|---|---|---|---|---|---|")
    lags = probe.lags_ms if probe else []
    sbm_text = (f"{percentile(sbm, 50):.0f} / {percentile(sbm, 99):.0f} / {max(sbm):.0f}"
                if sbm else "-")
    lag_text = (f"{percentile(lags, 50):.0f} / {percentile(lags, 99):.0f} / {max(lags):.0f}"
                if lags else "-")
    ok_text = "-" if ok is None else ("yes" if ok else "NO")
    print(f"| {args.mode} | {writer.events / load_s:,.0f} ({args.rate:,.0f}) | "
          f"{writer.events:,} | {sbm_text} | {lag_text} | {len(lags)} | {ok_text} |")
    if ok is False:
        raise SystemExit("the target differs from the source")


if __name__ == "__main__":
    main()
