"""Shared pieces of the replication benchmarks (bench/incr.py, bench/lag.py).

- `RowWriter`: a seeded sysbench-shaped write load in multi-row transactions, about 70 %
  inserted, 20 % updated and 10 % deleted rows; either a fixed number of row events as
  fast as it goes, or a paced rate for a duration.
- a `dmray serve` process and its v1 HTTP API: source, `incremental` task from a binlog
  position, start, sync_status.
- MariaDB's native replication: CHANGE MASTER TO a position, START SLAVE, SHOW SLAVE STATUS.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testbed.mariadb import MariaDBServer  # noqa: E402

SCHEMA = "sbtest"
Position = tuple[str, int]  # (binlog file, offset); file names sort in binlog order


# --- tables and positions -------------------------------------------------------------------

def sbtest_ddl(i: int) -> str:
    return (f"CREATE TABLE sbtest{i} (id INT NOT NULL AUTO_INCREMENT, "
            "k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', "
            "pad CHAR(60) NOT NULL DEFAULT '', PRIMARY KEY (id), KEY k_1 (k)) ENGINE=InnoDB")


def create_tables(server: MariaDBServer, schema: str, tables: int,
                  extra_ddl: Sequence[str] = ()) -> None:
    server.execute(f"DROP DATABASE IF EXISTS `{schema}`")
    server.execute(f"CREATE DATABASE `{schema}`")
    for stmt in [*(sbtest_ddl(i) for i in range(1, tables + 1)), *extra_ddl]:
        server.execute(stmt, database=schema)


def master_position(server: MariaDBServer) -> Position:
    [(file, pos, *_)] = server.query("SHOW MASTER STATUS")
    return str(file), int(pos)


_POS_RE = re.compile(r"^\(?\s*([^,\s]+)\s*,\s*(\d+)\s*\)?$")


def parse_position(text: str) -> Position | None:
    """DM's "(mysql-bin.000001, 1979)" form; None when empty or malformed."""
    m = _POS_RE.match(text or "")
    return (m.group(1), int(m.group(2))) if m else None


def checksums(server: MariaDBServer, schema: str, tables: Sequence[str]) -> list[int]:
    names = ", ".join(f"`{schema}`.`{t}`" for t in tables)
    return [int(r[1]) for r in server.query(f"CHECKSUM TABLE {names}")]


def row_count(server: MariaDBServer, schema: str, tables: Sequence[str]) -> int:
    counts = " + ".join(f"(SELECT COUNT(*) FROM `{schema}`.`{t}`)" for t in tables)
    return int(server.query(f"SELECT {counts}")[0][0])


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


# --- the write load --------------------------------------------------------------------------

class RowWriter:
    """Sysbench-shaped DML in transactions of about `txn_rows` row events: one multi-row
    INSERT (70 %), one UPDATE of k and c over an id list (20 %) and one DELETE over an id
    list (10 %), each on a random table. Ids are chosen by the writer (it tracks the live
    ones), so updates and deletes always hit rows and every row counts as one row event.
    Tables start empty: until enough rows exist, a transaction only inserts."""

    def __init__(self, server: MariaDBServer, schema: str, tables: int, *, seed: int = 1,
                 txn_rows: int = 100) -> None:
        self.server = server
        self.schema = schema
        self.tables = tables
        self.txn_rows = txn_rows
        self.rng = random.Random(seed)
        self.live: list[list[int]] = [[] for _ in range(tables)]
        self.next_id = [1] * tables
        self.inserted = self.updated = self.deleted = self.txns = 0
        # sysbench's shapes: c is 10 groups of 11 digits, pad 5; a pool keeps Python cheap.
        self._c = [self._digits(10) for _ in range(512)]
        self._pad = [self._digits(5) for _ in range(512)]

    def _digits(self, groups: int) -> str:
        return "-".join(f"{self.rng.randrange(10**11):011d}" for _ in range(groups))

    @property
    def events(self) -> int:
        return self.inserted + self.updated + self.deleted

    def _take(self, t: int, n: int) -> list[int]:
        """n distinct live ids of table t, removed from the live list (swap-remove)."""
        live = self.live[t]
        out = []
        for _ in range(min(n, len(live))):
            i = self.rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            out.append(live.pop())
        return out

    def txn_sql(self, rows: int) -> tuple[str, int]:
        """One transaction of `rows` row events as a multi-statement string."""
        n_upd = rows * 2 // 10
        n_del = rows // 10
        stmts = []
        t = self.rng.randrange(self.tables)
        upd = self._take(t, n_upd) if len(self.live[t]) > 4 * n_upd else []
        if upd:
            stmts.append(f"UPDATE sbtest{t + 1} SET k = k + 1, c = '{self.rng.choice(self._c)}' "
                         f"WHERE id IN ({','.join(map(str, upd))})")
            self.live[t] += upd
        t = self.rng.randrange(self.tables)
        dele = self._take(t, n_del) if len(self.live[t]) > 4 * n_del else []
        if dele:
            stmts.append(f"DELETE FROM sbtest{t + 1} WHERE id IN ({','.join(map(str, dele))})")
        n_ins = rows - len(upd) - len(dele)
        t = self.rng.randrange(self.tables)
        first = self.next_id[t]
        self.next_id[t] += n_ins
        values = ",".join(
            f"({i},{self.rng.randrange(1 << 20)},'{self.rng.choice(self._c)}',"
            f"'{self.rng.choice(self._pad)}')" for i in range(first, first + n_ins))
        stmts.insert(0, f"INSERT INTO sbtest{t + 1} (id, k, c, pad) VALUES {values}")
        self.live[t] += range(first, first + n_ins)
        self.inserted += n_ins
        self.updated += len(upd)
        self.deleted += len(dele)
        self.txns += 1
        return "BEGIN;" + ";".join(stmts) + ";COMMIT", rows

    def _connect(self) -> Any:
        return self.server.connect(self.schema)

    def write_events(self, total: int) -> float:
        """Write `total` row events as fast as one connection goes; returns seconds."""
        t0 = time.perf_counter()
        with self._connect() as conn, conn.cursor() as cur:
            while self.events < total:
                sql, _ = self.txn_sql(min(self.txn_rows, total - self.events))
                cur.execute(sql)
                while cur.nextset():
                    pass
        return time.perf_counter() - t0

    def run_paced(self, rate: float, duration: float,
                  stop: threading.Event | None = None) -> float:
        """About `rate` row events/s for `duration` s (whole transactions, spread evenly);
        returns the seconds it really took. Falls behind (and says so in the achieved rate)
        when the server or this one Python thread cannot keep up."""
        t0 = time.perf_counter()
        start_events = self.events
        with self._connect() as conn, conn.cursor() as cur:
            while (now := time.perf_counter() - t0) < duration:
                if stop is not None and stop.is_set():
                    break
                due = (self.events - start_events) / rate
                if due > now:
                    time.sleep(min(due - now, duration - now))
                    continue
                sql, _ = self.txn_sql(self.txn_rows)
                cur.execute(sql)
                while cur.nextset():
                    pass
        return time.perf_counter() - t0


# --- dmray ------------------------------------------------------------------------------------

def start_dmray(port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "serve_app.cli", "serve", "--data-dir",
         tempfile.mkdtemp(prefix="dmray-bench-"), "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop_dmray(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


class Dmray:
    """The few v1 API calls the replication benches make."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=120)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = self.client.get("/cluster/workers", timeout=5)
                if r.status_code == 200 and r.json()["total"]:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit("dmray did not start")

    def create_source(self, name: str, src: MariaDBServer) -> None:
        r = self.client.post("/sources", json={"source": {
            "source_name": name, "host": src.host, "port": src.port, "user": src.user,
            "password": src.password}})
        if r.status_code != 201:
            raise SystemExit(f"create source: {r.status_code} {r.text}")

    def create_incremental_task(self, name: str, source_name: str, tgt: MariaDBServer,
                                schema: str, target_schema: str, start: Position, *,
                                repl_threads: int, batch: int) -> None:
        task = {
            "name": name, "task_mode": "incremental", "on_duplicate": "error",
            "meta_schema": "dmray_meta", "enhance_online_schema_change": True,
            "target_config": {"host": tgt.host, "port": tgt.port, "user": tgt.user,
                              "password": tgt.password},
            "table_migrate_rule": [{"source": {"source_name": source_name, "schema": schema,
                                               "table": "*"},
                                    "target": {"schema": target_schema}}],
            "source_config": {
                "incr_migrate_conf": {"repl_threads": repl_threads, "repl_batch": batch},
                "source_conf": [{"source_name": source_name, "binlog_name": start[0],
                                 "binlog_pos": start[1]}]},
            "ignore_checking_items": ["all"],
        }
        r = self.client.post("/tasks", json={"task": task})
        if r.status_code != 201:
            raise SystemExit(f"create task: {r.status_code} {r.text}")

    def start_task(self, name: str) -> None:
        r = self.client.post(f"/tasks/{name}/start", json={})
        if r.status_code != 200:
            raise SystemExit(f"start task: {r.status_code} {r.text}")

    def subtask_status(self, name: str) -> dict[str, Any]:
        """The one subtask's status; exits when the subtask paused on an error."""
        st: dict[str, Any] = self.client.get(f"/tasks/{name}/status").json()["data"][0]
        if st.get("stage") == "Paused":
            raise SystemExit(f"dmray task paused: {st.get('error_msg')}")
        return st

    def caught_up(self, name: str, end: Position) -> bool:
        """synced, and the syncer's checkpoint at or past `end`."""
        sync = self.subtask_status(name).get("sync_status") or {}
        pos = parse_position(sync.get("syncer_binlog", ""))
        return bool(sync.get("synced")) and pos is not None and pos >= end


# --- native replication -----------------------------------------------------------------------

def slave_status(replica: MariaDBServer) -> dict[str, Any]:
    with replica.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        row = cur.fetchone()
        if row is None:
            return {}
        return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


def start_native(replica: MariaDBServer, primary: MariaDBServer, start: Position,
                 parallel_threads: int) -> None:
    """CHANGE MASTER TO the position (file/offset, not GTID) and START SLAVE."""
    replica.execute("STOP SLAVE")
    replica.execute("RESET SLAVE ALL")
    replica.execute(f"SET GLOBAL slave_parallel_threads = {parallel_threads}")
    replica.execute("SET GLOBAL slave_parallel_mode = 'optimistic'")
    replica.execute(
        "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
        "MASTER_PASSWORD = %s, MASTER_LOG_FILE = %s, MASTER_LOG_POS = %s, "
        "MASTER_USE_GTID = no, MASTER_CONNECT_RETRY = 1",
        (primary.host, primary.port, primary.user, primary.password, start[0], start[1]))
    replica.execute("START SLAVE")


def native_position(replica: MariaDBServer) -> Position:
    """Where the SQL thread has applied up to, in the primary's binlog coordinates."""
    st = slave_status(replica)
    if st.get("Slave_SQL_Running") != "Yes":
        raise SystemExit(f"replica SQL thread stopped: {st.get('Last_SQL_Error')}")
    return str(st["Relay_Master_Log_File"]), int(st["Exec_Master_Log_Pos"])


def stop_native(replica: MariaDBServer) -> None:
    replica.execute("STOP SLAVE")
    replica.execute("RESET SLAVE ALL")
