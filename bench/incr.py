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
  (c) --only syncer: mysqlkit.sync.syncer.Syncer in this process (no Ray, no API), clocked
      from its start until its global checkpoint reaches the end position; with
      --profile FILE the run is sampled by py-spy (every thread; FILE gets the collapsed
      stacks, the top functions by own and total time are printed).
Each copy is verified against the source with CHECKSUM TABLE. Prints a markdown table
with row events, seconds, row events/s, and the ratio of catch-up times.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

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
from serve_app.procfs import processes, read_stat  # noqa: E402
from testbed.mariadb import MariaDBServer, start_servers  # noqa: E402
from testbed.ports import free_port  # noqa: E402

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
        cpu0 = _session_cpu(proc.pid)
        t0 = time.perf_counter()
        api.start_task(TASK)
        deadline = t0 + args.timeout
        progress: list[tuple[float, int]] = []  # (seconds since start, total_events)
        while time.perf_counter() < deadline:
            sync = api.subtask_status(TASK).get("sync_status") or {}
            progress.append((time.perf_counter() - t0, int(sync.get("total_events") or 0)))
            if api.caught_up(TASK, end) and row_count(tgt, DMRAY_SCHEMA, tables) == expect_rows:
                secs = time.perf_counter() - t0
                _print_progress(progress, args.events)
                cpu1 = _session_cpu(proc.pid)
                used = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
                print(f"CPU seconds of dmray's processes during the catch-up ({secs:.1f} s "
                      f"wall): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(
                          used.items(), key=lambda kv: -kv[1]) if v >= 0.1), flush=True)
                return secs
            time.sleep(0.2)
        raise SystemExit(f"dmray did not catch up within {args.timeout}s: "
                         f"{api.subtask_status(TASK).get('sync_status')}")
    finally:
        stop_dmray(proc)


def _session_cpu(sid: int) -> dict[str, float]:
    """CPU seconds (user + system) per process name of the session `sid` (the `dmray
    serve` process and everything it started: Ray's daemons and workers)."""
    out: dict[str, float] = collections.defaultdict(float)
    for st in processes():
        if st.session == sid:
            out[st.comm] += st.cpu_s()
    return out


def _print_progress(progress: list[tuple[float, int]], total: int) -> None:
    """Where the catch-up time went: until the first row was counted (task start: worker
    process, connections, checkpoint table, schema tracker), then the steady rate over the
    middle 10-90 % of the rows, then the tail."""
    first = next((t for t, n in progress if n > 0), float("nan"))
    lo = next((p for p in progress if p[1] >= total * 0.1), None)
    hi = next((p for p in progress if p[1] >= total * 0.9), None)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if lo and hi and hi[0] > lo[0] else float("nan")
    last = next((t for t, n in progress if n >= total), progress[-1][0])
    print(f"dmray: first row counted after {first:.1f} s; steady {steady:,.0f} row events/s "
          f"(10-90 %); all counted after {last:.1f} s", flush=True)


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


def run_inproc(src: MariaDBServer, tgt: MariaDBServer, tables: list[str], start: Position,
               end: Position, args: argparse.Namespace) -> float:
    """The syncer alone, in this process: what the Ray/API layers add is the difference."""
    from domain.task_models import Task
    from mysqlkit.binlog.filter import BinlogFilter
    from mysqlkit.position import BinlogPosition
    from mysqlkit.routing import RouteRule, TableRouter
    from mysqlkit.sync import checkpoint
    from mysqlkit.sync.syncer import Syncer, SyncSpec
    from mysqlkit.upstream import ConnConfig

    create_tables(tgt, DMRAY_SCHEMA, args.tables)
    router = TableRouter([RouteRule(SCHEMA, "*", DMRAY_SCHEMA)])
    no_filters = cast(Task, SimpleNamespace(binlog_filter_rule=None))
    spec = SyncSpec(
        task="bench-inproc", source="bench-src",
        src=ConnConfig(src.host, src.port, src.user, src.password),
        tgt=ConnConfig(tgt.host, tgt.port, tgt.user, tgt.password), meta="dmray_meta",
        router=router, bfilter=BinlogFilter(no_filters, router), server_id=4242,
        repl_threads=args.repl_threads, repl_batch=args.batch,
        start=BinlogPosition(start[0], start[1], ""))
    syncer = Syncer(spec)
    if args.variant == "no-idle-handover":
        # The reader's on_idle hook ignored: hand-overs only per READ_CHUNK events.
        from mysqlkit.binlog.reader import BinlogReader
        BinlogReader.on_idle = property(lambda r: None,  # type: ignore[assignment]
                                        lambda r, v: None)
    spy = None
    if args.profile:
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(os.getpid()),
             "--threads", "--gil", "--rate", "200", "--format", "raw", "-o", args.profile],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)

    async def go() -> float:
        t0 = time.perf_counter()
        task = asyncio.create_task(syncer.run())
        while True:
            await asyncio.sleep(0.05)
            if task.done():
                task.result()
            a = syncer.applied
            if a is not None and checkpoint.pos_key(a) >= end:
                secs = time.perf_counter() - t0
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return secs

    cpu0 = _cpu(src, tgt)
    try:
        secs = asyncio.run(go())
        cpu = [b - a for a, b in zip(cpu0, _cpu(src, tgt), strict=True)]
        print(f"CPU seconds during the catch-up ({secs:.1f} s wall): this process "
              f"{cpu[0]:.1f} user + {cpu[1]:.1f} sys, source mariadbd {cpu[2]:.1f}, "
              f"target mariadbd {cpu[3]:.1f}", flush=True)
        return secs
    finally:
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes its file
            spy.wait(60)
            _print_profile(args.profile)


def _cpu(src: MariaDBServer, tgt: MariaDBServer) -> list[float]:
    """[own user s, own sys s, source server s, target server s]."""
    t = os.times()
    out = [t.user, t.system]
    for server in (src, tgt):
        st = read_stat(server.pid)
        out.append(st.cpu_s() if st is not None else 0.0)
    return out


def _print_profile(path: str, top: int = 25) -> None:
    """Own and total samples per function from py-spy's collapsed stacks, sampled only
    while a thread holds the GIL (i.e. Python CPU time of this process)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    by_thread: collections.Counter[str] = collections.Counter()
    n = 0
    idle_marks = ("select (selectors.py", "_run_once (asyncio", "wait (threading.py",
                  "_recv_into", "readinto (socket.py", "read1", "epoll")
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        leaf = frames[-1]
        if any(m in leaf for m in idle_marks):
            continue
        c = int(count)
        n += c
        by_thread[frames[0].split(" ")[0] if frames else "?"] += c
        own[_fn(leaf)] += c
        for f in set(map(_fn, frames[1:])):
            total[f] += c
    print(f"\nprofile: {n} busy samples; by thread: "
          + ", ".join(f"{k} {v / n:.0%}" for k, v in by_thread.most_common(6)))
    print("own time:")
    for f, c in own.most_common(top):
        print(f"  {c / n:6.1%}  {f}")
    print("total time:")
    for f, c in total.most_common(top):
        print(f"  {c / n:6.1%}  {f}")


def _fn(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    return f"{name} ({'/'.join(file.split('/')[-2:])})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="row events to write")
    ap.add_argument("--tables", type=int, default=4)
    ap.add_argument("--txn-rows", type=int, default=100, help="row events per transaction")
    ap.add_argument("--repl-threads", type=int, default=4,
                    help="dmray repl_threads and the replica's slave_parallel_threads")
    ap.add_argument("--batch", type=int, default=100, help="dmray repl_batch")
    ap.add_argument("--only", choices=["native", "dmray", "syncer"])
    ap.add_argument("--profile", default="", help="--only syncer: py-spy output file")
    ap.add_argument("--variant", default="as-is",
                    choices=["as-is", "no-idle-handover"],
                    help="--only syncer: the syncer as it is; one round trip per lane job "
                         "(an experiment); without the reader's idle hand-over")
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
        if args.only == "syncer":
            secs = run_inproc(src, tgt, tables, start, end, args)
            results.append(("dmray Syncer in-process (no Ray)", secs,
                            checksums(tgt, DMRAY_SCHEMA, tables) == expect))
            print(f"syncer: {secs:.1f} s", flush=True)
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
