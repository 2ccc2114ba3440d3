"""Incremental catch-up: dmray `incremental` against MariaDB's native replication, over the
same binlog range of the same servers in one run.

    .venv/bin/python bench/incr.py                                 # 1,000,000 row events
    .venv/bin/python bench/incr.py --only native --events 200000

Starts a private source and a private target MariaDB (as the tests do, with a larger
buffer pool), creates --tables sysbench-shaped tables on the source (id INT PK
auto_increment, k INT, c CHAR(120), pad CHAR(60), index on k) and notes the binlog
position. With nothing replicating, a seeded load then writes --events row events (about
70 % insert, 20 % update, 10 % delete; transactions of --txn-rows rows) and the end
position is noted. Then, each from empty copies of the tables on the target:
  (a) dmray: a `dmray serve` process; POST /sources, POST /tasks with task_mode
      `incremental`, source_conf binlog_name/binlog_pos = the start position, into schema
      dmray_sbtest; the clock runs from POST /tasks/{t}/start until sync_status says
      synced with syncer_binlog at or past the end position and the row count equals
      the source's;
  (b) native: CHANGE MASTER TO the start position (MASTER_USE_GTID=no), START SLAVE with
      slave_parallel_threads = --repl-threads (optimistic); the clock runs from START
      SLAVE until Exec_Master_Log_Pos reaches the end position.
Each copy is verified against the source with CHECKSUM TABLE. Prints a markdown table
with row events, seconds, row events/s, and the ratio of catch-up times.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common_repl import (  # noqa: E402
    SCHEMA,
    Dmray,
    Position,
    RowWriter,
    checksums,
    create_tables,
    master_position,
    native_position,
    row_count,
    start_dmray,
    start_native,
    stop_dmray,
    stop_native,
)
from tests.support.fixtures_ray import free_port  # noqa: E402
from tests.support.mariadb import MariaDBServer, start_servers  # noqa: E402

DMRAY_SCHEMA = "dmray_" + SCHEMA
TASK = "bench-incr"


def run_dmray(src: MariaDBServer, tgt: MariaDBServer, tables: list[str], start: Position,
              end: Position, args: argparse.Namespace) -> float:
    create_tables(tgt, DMRAY_SCHEMA, args.tables)
    expect_rows = row_count(src, SCHEMA, tables)
    port = free_port()
    proc = start_dmray(port)
    try:
        api = Dmray(f"http://127.0.0.1:{port}/api/v1")
        api.wait_ready()
        api.create_source("bench-src", src)
        api.create_incremental_task(TASK, "bench-src", tgt, SCHEMA, DMRAY_SCHEMA, start,
                                    repl_threads=args.repl_threads, batch=args.batch)
        t0 = time.perf_counter()
        api.start_task(TASK)
        deadline = t0 + args.timeout
        while time.perf_counter() < deadline:
            if api.caught_up(TASK, end) and row_count(tgt, DMRAY_SCHEMA, tables) == expect_rows:
                return time.perf_counter() - t0
            time.sleep(0.2)
        raise SystemExit(f"dmray did not catch up within {args.timeout}s: "
                         f"{api.subtask_status(TASK).get('sync_status')}")
    finally:
        stop_dmray(proc)


def run_native(src: MariaDBServer, tgt: MariaDBServer, start: Position, end: Position,
               args: argparse.Namespace) -> float:
    create_tables(tgt, SCHEMA, args.tables)  # same name: native replication does not route
    t0 = time.perf_counter()
    start_native(tgt, src, start, args.repl_threads)
    deadline = t0 + args.timeout
    try:
        while time.perf_counter() < deadline:
            if native_position(tgt) >= end:
                return time.perf_counter() - t0
            time.sleep(0.05)
        raise SystemExit(f"native replica did not catch up within {args.timeout}s "
                         f"(at {native_position(tgt)}, end {end})")
    finally:
        stop_native(tgt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="row events to write")
    ap.add_argument("--tables", type=int, default=4)
    ap.add_argument("--txn-rows", type=int, default=100, help="row events per transaction")
    ap.add_argument("--repl-threads", type=int, default=4,
                    help="dmray repl_threads and the replica's slave_parallel_threads")
    ap.add_argument("--batch", type=int, default=100, help="dmray repl_batch")
    ap.add_argument("--only", choices=["native", "dmray"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--buffer-pool", default="512M", help="innodb_buffer_pool_size of both")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per catch-up")
    args = ap.parse_args()

    src, tgt = start_servers([811, 812], names=["bench-incr-source", "bench-incr-target"],
                             extra_args=[f"--innodb-buffer-pool-size={args.buffer_pool}"])
    tables = [f"sbtest{i}" for i in range(1, args.tables + 1)]
    results: list[tuple[str, float, bool]] = []
    try:
        create_tables(src, SCHEMA, args.tables)
        start = master_position(src)
        writer = RowWriter(src, SCHEMA, args.tables, seed=args.seed, txn_rows=args.txn_rows)
        write_s = writer.write_events(args.events)
        end = master_position(src)
        expect = checksums(src, SCHEMA, tables)
        print(f"wrote {writer.events:,} row events ({writer.inserted:,} inserted, "
              f"{writer.updated:,} updated, {writer.deleted:,} deleted) in {writer.txns:,} "
              f"transactions in {write_s:.1f} s ({writer.events / write_s:,.0f}/s); "
              f"binlog {start} .. {end}", flush=True)

        if args.only in (None, "dmray"):
            secs = run_dmray(src, tgt, tables, start, end, args)
            results.append(("dmray incremental", secs,
                            checksums(tgt, DMRAY_SCHEMA, tables) == expect))
            print(f"dmray: {secs:.1f} s", flush=True)
        if args.only in (None, "native"):
            secs = run_native(src, tgt, start, end, args)
            results.append(("MariaDB native replication", secs,
                            checksums(tgt, SCHEMA, tables) == expect))
            print(f"native: {secs:.1f} s", flush=True)
    finally:
        src.stop()
        tgt.stop()

    n = writer.events
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; {args.tables} tables, {n:,} row events in "
          f"transactions of {args.txn_rows}; repl threads {args.repl_threads}, "
          f"batch {args.batch}")
    print("| replication | row events | catch-up s | row events/s | CHECKSUM TABLE equal |")
    print("|---|---|---|---|---|")
    for label, secs, ok in results:
        print(f"| {label} | {n:,} | {secs:.1f} | {n / secs:,.0f} | {'yes' if ok else 'NO'} |")
    if len(results) == 2:
        print(f"\nratio dmray / native catch-up time: {results[0][1] / results[1][1]:.2f}")
    if not all(ok for _, _, ok in results):
        raise SystemExit("a target differs from the source")


if __name__ == "__main__":
    main()
