"""Row-event decode throughput: pymysqlreplication's own `.rows` vs our readers.

Starts a private MariaDB (testbed/mariadb.py), writes sysbench-shaped rows (id INT PK,
k INT, c CHAR(120), pad CHAR(60)) as single-row INSERT events into one binlog file and
multi-row INSERT events into the next, then reads each file with every reader in the same
run (non-blocking dump to the end of the binlog; best of --repeat runs, by wall time and by
the reading thread's CPU time, which a machine shared with other work disturbs less):
  framing  pymysqlreplication events without touching `.rows`,
  library  pymysqlreplication with `.rows` (its own decoding),
  old      the previous mysqlkit.binlog.reader (pymysqlreplication framing + rowcodec), loaded
           from git HEAD~ if it still differs (skipped with --no-old),
  lean     mysqlkit.binlog.reader.BinlogReader (our framing + rowcodec, RowsChange as SQL text),
  skip     the lean reader with want_table = nothing (framing + table-id skip only).

    .venv/bin/python bench/decode.py [--single 150000] [--multi 50000] [--multi-rows 4]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import random
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from mysqlkit.binlog.reader import BinlogReader, RowsChange, Start
from mysqlkit.upstream import ConnConfig
from testbed.mariadb import MariaDBServer

_TABLE = ("CREATE TABLE bench.{} (id INT NOT NULL PRIMARY KEY, k INT NOT NULL DEFAULT 0, "
          "c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '')")


def _sb_row(rng: random.Random, i: int) -> str:
    c = "-".join("".join(rng.choices(string.digits, k=11)) for _ in range(10))
    pad = "-".join("".join(rng.choices(string.digits, k=11)) for _ in range(5))
    return f"({i},{rng.randint(1, 1_000_000)},'{c}','{pad}')"


def _run_batches(server: MariaDBServer, stmts_of: Callable[[int, int], list[str]],
                 total: int) -> None:
    batch = 500  # statements per round trip, one transaction each batch
    with server.connect() as conn, conn.cursor() as cur:
        for lo in range(0, total, batch):
            cur.execute("BEGIN; " + "; ".join(stmts_of(lo, min(total, lo + batch)))
                        + "; COMMIT")
            while cur.nextset():
                pass


def generate_single(server: MariaDBServer, rng: random.Random, single: int) -> None:
    server.execute("CREATE DATABASE bench; " + _TABLE.format("sbtest1") + "; "
                   + _TABLE.format("sbtest2"))
    _run_batches(server, lambda lo, hi: [f"INSERT INTO bench.sbtest1 VALUES {_sb_row(rng, i)}"
                                         for i in range(lo, hi)], single)


def generate_multi(server: MariaDBServer, rng: random.Random, multi: int,
                   multi_rows: int) -> None:
    def stmts(lo: int, hi: int) -> list[str]:
        return ["INSERT INTO bench.sbtest2 VALUES "
                + ",".join(_sb_row(rng, i * multi_rows + j) for j in range(multi_rows))
                for i in range(lo, hi)]
    _run_batches(server, stmts, multi)


def _library(server: MariaDBServer, first_log: str, decode: bool) -> tuple[int, int]:
    settings: dict[str, Any] = {"host": server.host, "port": server.port,
                                "user": server.user, "password": server.password}
    stream = BinLogStreamReader(
        connection_settings=settings, server_id=9001, blocking=False, resume_stream=True,
        log_file=first_log, log_pos=4, enable_logging=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent])
    events = rows = 0
    try:
        for ev in stream:
            events += 1
            if decode:
                rows += len(ev.rows)
    finally:
        stream.close()
    return events, rows


def _load_old_binlog() -> Any | None:
    """The reader before the lean stream (pymysqlreplication framing), from git."""
    root = Path(__file__).resolve().parents[1]
    for rev in ("HEAD", "HEAD~1"):
        try:
            text = subprocess.run(["git", "show", f"{rev}:mysqlkit/binlog/reader.py"], cwd=root,
                                  check=True, capture_output=True, text=True).stdout
        except subprocess.CalledProcessError:
            continue
        if "BinLogStreamReader(" in text and "TableMapEvent" in text:
            path = Path(tempfile.mkdtemp()) / "binlog_old.py"
            path.write_text(text)
            spec = importlib.util.spec_from_file_location("binlog_old", path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules["binlog_old"] = mod  # dataclasses look their module up
            spec.loader.exec_module(mod)
            return mod
    return None


def _reader(server: MariaDBServer, first_log: str, module: Any, *,
            want: bool = True) -> tuple[int, int]:
    cfg = ConnConfig(server.host, server.port, server.user, server.password)
    events = rows = 0
    with module.BinlogReader(cfg, 9002, module.Start(first_log, 4), flavor="mariadb",
                             blocking=False, unsigned_of=lambda s, t: [False] * 4,
                             want_table=(lambda s, t: want)) as reader:
        for ch in reader:
            if isinstance(ch, module.RowsChange):
                events += 1
                rows += len(ch.rows) + len(ch.updates)
    return events, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--single", type=int, default=150_000, help="single-row INSERT events")
    ap.add_argument("--multi", type=int, default=50_000, help="multi-row INSERT events")
    ap.add_argument("--multi-rows", type=int, default=4, help="rows per multi-row event")
    ap.add_argument("--repeat", type=int, default=2, help="runs per reader (best counts)")
    ap.add_argument("--no-old", action="store_true", help="skip the previous reader")
    args = ap.parse_args()

    old = None if args.no_old else _load_old_binlog()
    lean = sys.modules["mysqlkit.binlog.reader"]
    assert lean.RowsChange is RowsChange and lean.BinlogReader is BinlogReader
    assert lean.Start is Start
    server = MariaDBServer(191, name="bench-decode",
                           extra_args=["--max-binlog-size=1G"]).start()
    rng = random.Random(42)
    try:
        for label, gen in (
                ("single-row", lambda: generate_single(server, rng, args.single)),
                (f"{args.multi_rows}-row", lambda: generate_multi(server, rng, args.multi,
                                                                   args.multi_rows))):
            server.execute("FLUSH BINARY LOGS")
            [(log_file, *_)] = server.query("SHOW MASTER STATUS")
            t0 = time.perf_counter()
            gen()
            print(f"\n{label} INSERT events into {log_file}: generated in "
                  f"{time.perf_counter() - t0:.1f}s", flush=True)
            lib = functools.partial(_library, server, log_file)
            rdr = functools.partial(_reader, server, log_file)
            readers: list[tuple[str, Callable[[], tuple[int, int]]]] = [
                ("framing", functools.partial(lib, False)),
                ("library", functools.partial(lib, True))]
            if old is not None:
                readers.append(("old", functools.partial(rdr, old)))
            readers += [("lean", functools.partial(rdr, lean)),
                        ("skip", functools.partial(rdr, lean, want=False))]
            results: dict[str, float] = {}
            total = 0  # row events in the file (the skip run yields none)
            for name, fn in readers:
                best = best_cpu = float("inf")
                for _ in range(args.repeat):
                    t, c = time.perf_counter(), time.thread_time()
                    events, rows = fn()
                    best = min(best, time.perf_counter() - t)
                    best_cpu = min(best_cpu, time.thread_time() - c)
                total = total or events
                n = total
                results[name] = n / best
                print(f"{name:8s} {n:7d} row events, {rows:7d} rows decoded in {best:6.2f}s: "
                      f"{n / best:8.0f} events/s wall, {n / best_cpu:8.0f} per CPU second",
                      flush=True)
            ratio = " ".join(f"{k}/library {v / results['library']:.2f}x"
                             for k, v in results.items() if k != "library")
            print(f"{label}: {ratio}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
