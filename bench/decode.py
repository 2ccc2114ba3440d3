"""Row-event decode throughput: pymysqlreplication's own `.rows` vs our reader + rowcodec.

Starts a private MariaDB (tests/support/mariadb.py), writes sysbench-shaped rows (id INT PK,
k INT, c CHAR(120), pad CHAR(60)) as single-row INSERT events and multi-row INSERT events,
then reads the same binlog three times in the same run:
  framing  pymysqlreplication events without touching `.rows` (the floor both share),
  library  pymysqlreplication with `.rows` (its own decoding),
  ours     mysqlkit.binlog.BinlogReader (RowsChange with SQL literal text).

    .venv/bin/python bench/decode.py [--single 150000] [--multi 50000] [--multi-rows 4]
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from mysqlkit.binlog import BinlogReader, RowsChange, Start
from mysqlkit.upstream import ConnConfig
from tests.support.mariadb import MariaDBServer

_TABLE = ("CREATE TABLE bench.{} (id INT NOT NULL PRIMARY KEY, k INT NOT NULL DEFAULT 0, "
          "c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '')")


def _sb_row(rng: random.Random, i: int) -> str:
    c = "-".join("".join(rng.choices(string.digits, k=11)) for _ in range(10))
    pad = "-".join("".join(rng.choices(string.digits, k=11)) for _ in range(5))
    return f"({i},{rng.randint(1, 1_000_000)},'{c}','{pad}')"


def generate(server: MariaDBServer, single: int, multi: int, multi_rows: int) -> None:
    rng = random.Random(42)
    server.execute("CREATE DATABASE bench; " + _TABLE.format("sbtest1") + "; "
                   + _TABLE.format("sbtest2"))
    batch = 500  # statements per round trip, one transaction each batch
    with server.connect() as conn, conn.cursor() as cur:
        for lo in range(0, single, batch):
            stmts = [f"INSERT INTO bench.sbtest1 VALUES {_sb_row(rng, i)}"
                     for i in range(lo, min(single, lo + batch))]
            cur.execute("BEGIN; " + "; ".join(stmts) + "; COMMIT")
            while cur.nextset():
                pass
        n = 0
        for lo in range(0, multi, batch):
            stmts = []
            for _ in range(lo, min(multi, lo + batch)):
                rows = ",".join(_sb_row(rng, n + j) for j in range(multi_rows))
                n += multi_rows
                stmts.append(f"INSERT INTO bench.sbtest2 VALUES {rows}")
            cur.execute("BEGIN; " + "; ".join(stmts) + "; COMMIT")
            while cur.nextset():
                pass


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


def _ours(server: MariaDBServer, first_log: str) -> tuple[int, int]:
    cfg = ConnConfig(server.host, server.port, server.user, server.password)
    events = rows = 0
    with BinlogReader(cfg, 9002, Start(first_log, 4), flavor="mariadb", blocking=False,
                      unsigned_of=lambda s, t: [False] * 4) as reader:
        for ch in reader:
            if isinstance(ch, RowsChange):
                events += 1
                rows += len(ch.rows) + len(ch.updates)
    return events, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--single", type=int, default=150_000, help="single-row INSERT events")
    ap.add_argument("--multi", type=int, default=50_000, help="multi-row INSERT events")
    ap.add_argument("--multi-rows", type=int, default=4, help="rows per multi-row event")
    args = ap.parse_args()

    server = MariaDBServer(191, name="bench-decode",
                           extra_args=["--max-binlog-size=1G"]).start()
    try:
        t0 = time.perf_counter()
        [(first_log, *_)] = server.query("SHOW BINARY LOGS")[:1]
        generate(server, args.single, args.multi, args.multi_rows)
        print(f"generated {args.single} single-row + {args.multi} x {args.multi_rows}-row "
              f"events in {time.perf_counter() - t0:.1f}s")
        results: dict[str, float] = {}
        for name, fn in (("framing", lambda: _library(server, first_log, False)),
                         ("library", lambda: _library(server, first_log, True)),
                         ("ours", lambda: _ours(server, first_log))):
            t = time.perf_counter()
            events, rows = fn()
            dt = time.perf_counter() - t
            results[name] = events / dt
            print(f"{name:8s} {events:7d} row events, {rows:7d} rows in {dt:6.2f}s: "
                  f"{events / dt:8.0f} events/s, {rows / dt:8.0f} rows/s")
        print(f"ours / library: {results['ours'] / results['library']:.2f}x "
              f"(framing alone: {results['framing']:.0f} events/s)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
