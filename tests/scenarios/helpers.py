"""Building blocks of the scenario suite: DM task bodies, sources, tables, writers that keep
writing on the sources while a task runs, row-by-row checks of the target (one table to
one, or shards merged into one), waits that fail fast on a paused subtask, and running
independent parts of a scenario at once.

Every name a scenario makes ends with its tag (schemas, sources, the meta schema), so
tests.support.api.drop_tagged removes all of it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pymysql

from testbed.mariadb import MariaDBServer
from tests.support.api import q
from tests.support.compare import (
    Pair,
    _expr,
    compare_tables,
    diff_rows,
    fetch_rows,
    format_diff,
    primary_key,
    table_columns,
)
from tests.support.fixtures_ray import DMServer

TABLE_DEF = ("(id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY ix_k (k)) "
             "DEFAULT CHARSET=utf8mb4")
POLL_S = 0.25
WAIT_S = 75.0  # the longest a scenario waits for one thing (a known hang fails within it)


# --- sources and tables ---------------------------------------------------------------------

@dataclass(frozen=True)
class Src:
    """A DM source: its name in dmray and the MariaDB server it reads."""

    name: str
    server: MariaDBServer


def create_source(api: httpx.Client, src: Src, worker: str | None = None) -> None:
    body: dict[str, Any] = {"source": {
        "source_name": src.name, "host": src.server.host, "port": src.server.port,
        "user": src.server.user, "password": src.server.password, "enable_gtid": False,
        "enable": True}}
    if worker:
        body["worker_name"] = worker
    r = api.post("/sources", json=body)
    assert r.status_code == 201, r.text


def master_pos(server: MariaDBServer) -> tuple[str, int]:
    [row] = server.query("SHOW MASTER STATUS")
    return str(row[0]), int(row[1])


def make_tables(server: MariaDBServer, schema: str, tables: Iterable[str], rows: int = 0,
                id_base: int = 0) -> None:
    """The schema (if missing) and each table, with `rows` rows of ids id_base+1...."""
    server.execute(f"CREATE DATABASE IF NOT EXISTS `{schema}`")
    for t in tables:
        server.execute(f"CREATE TABLE `{schema}`.`{t}` {TABLE_DEF}")
        if rows:
            insert_rows(server, schema, t, range(id_base + 1, id_base + rows + 1))


def insert_rows(server: MariaDBServer, schema: str, table: str, ids: Iterable[int]) -> None:
    server.executemany(f"INSERT INTO `{schema}`.`{table}` (id, k, v) VALUES (%s, %s, %s)",
                       [(i, i % 97, f"r{i}-ë😀'\\") for i in ids])


def copy_structure(source: MariaDBServer, schema: str, tables: Iterable[str],
                   target: MariaDBServer, tschema: str) -> None:
    """The tables on the target, empty, as a prior full migration would have made them
    (an incremental task's start position comes after their creation)."""
    target.execute(f"CREATE DATABASE IF NOT EXISTS `{tschema}`")
    for t in tables:
        [(_, create)] = source.query(f"SHOW CREATE TABLE `{schema}`.`{t}`")
        target.execute(f"USE `{tschema}`; {create}")


# --- task bodies and calls ------------------------------------------------------------------

def rule(source: str, schema: str, tschema: str, table: str = "*", ttable: str | None = None,
         filters: Sequence[str] = ()) -> dict[str, Any]:
    r: dict[str, Any] = {"source": {"source_name": source, "schema": schema, "table": table},
                         "target": {"schema": tschema}}
    if ttable:
        r["target"]["table"] = ttable
    if filters:
        r["binlog_filter_rule"] = list(filters)
    return r


def task_body(name: str, target: MariaDBServer, mode: str, rules: list[dict[str, Any]],
              source_conf: list[dict[str, Any]], meta: str, data_dir: str = "",
              **extra: Any) -> dict[str, Any]:
    """A DM task as the OpenAPI docs write it; `extra` adds or replaces Task fields."""
    task: dict[str, Any] = {
        "name": name, "task_mode": mode, "meta_schema": meta,
        "enhance_online_schema_change": True, "on_duplicate": "error",
        "target_config": {"host": target.host, "port": target.port, "user": target.user,
                          "password": target.password},
        "table_migrate_rule": rules,
        "source_config": {
            "full_migrate_conf": {"export_threads": 2, "import_threads": 2},
            "incr_migrate_conf": {"repl_threads": 4, "repl_batch": 50},
            "source_conf": source_conf},
        "ignore_checking_items": ["version"],
    }
    if data_dir:
        task["source_config"]["full_migrate_conf"]["data_dir"] = data_dir
    task.update(extra)
    return {"task": task}


def conf(source: str, pos: tuple[str, int] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"source_name": source}
    if pos is not None:
        c["binlog_name"], c["binlog_pos"] = pos
    return c


def create_task(api: httpx.Client, body: dict[str, Any]) -> None:
    r = api.post("/tasks", json=body)
    assert r.status_code == 201, r.text


def start_task(api: httpx.Client, name: str, **req: Any) -> None:
    r = api.post(f"/tasks/{q(name)}/start", json=req)
    assert r.status_code == 200, r.text


def stop_task(api: httpx.Client, name: str, sources: Sequence[str] | None = None) -> None:
    req = {"source_name_list": list(sources)} if sources else {}
    r = api.post(f"/tasks/{q(name)}/stop", json=req)
    assert r.status_code == 200, r.text


def status(api: httpx.Client, name: str,
           sources: Sequence[str] | None = None) -> list[dict[str, Any]]:
    params = {"source_name_list": list(sources)} if sources else None
    r = api.get(f"/tasks/{q(name)}/status", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def by_source(data: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["source_name"]: d for d in data}


def brief(data: list[dict[str, Any]]) -> str:
    """Subtask statuses in one line each: what a failure message needs."""
    out = []
    for d in data:
        sync = d.get("sync_status") or {}
        out.append(f"{d.get('source_name')}: {d.get('stage')}/{d.get('unit')} "
                   f"worker={d.get('worker_name')!r} events={sync.get('total_events')} "
                   f"synced={sync.get('synced')} syncer={sync.get('syncer_binlog')} "
                   f"master={sync.get('master_binlog')} error={d.get('error_msg', '')!r}")
    return "\n    ".join(out)


def no_error_pause(api: httpx.Client, tasks: Sequence[str],
                   allow: Sequence[tuple[str, str]] = ()) -> None:
    """Raise at once when a subtask is Paused with an error (but not the (task, source)
    pairs in `allow`, which the scenario paused itself)."""
    for t in tasks:
        data = status(api, t)
        bad = [d for d in data if d["stage"] == "Paused" and d.get("error_msg")
               and (t, d["source_name"]) not in allow]
        if bad:
            raise AssertionError(f"task {t} paused with an error:\n    {brief(data)}")


def wait_for(what: str, probe: Callable[[], str | None], timeout: float = WAIT_S,
             guard: Callable[[], None] | None = None) -> float:
    """Poll until probe() answers None (it answers what is still wrong otherwise); guard()
    runs first on each poll and may raise to fail fast. Returns the seconds it took."""
    t0 = time.monotonic()
    last: str | None = "not probed"
    while True:
        if guard is not None:
            guard()
        try:
            last = probe()
        except (pymysql.MySQLError, httpx.HTTPError) as exc:  # e.g. a table not there yet
            last = f"{type(exc).__name__}: {exc}"
        if last is None:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; last: {last}")
        time.sleep(POLL_S)


def stages_are(api: httpx.Client, name: str, stage: str, unit: str | None = None,
               sources: Sequence[str] | None = None) -> Callable[[], str | None]:
    def probe() -> str | None:
        data = status(api, name, sources)
        ok = data and all(d["stage"] == stage and (unit is None or d["unit"] == unit)
                          for d in data)
        return None if ok else f"want {stage}/{unit or '*'}:\n    {brief(data)}"
    return probe


def in_sync(api: httpx.Client, *tasks: str) -> Callable[[], str | None]:
    """Every subtask of the tasks Running in the Sync unit (not necessarily caught up:
    while writes go on, `synced` may rightly stay false)."""
    def probe() -> str | None:
        for t in tasks:
            if (why := stages_are(api, t, "Running", "Sync")()) is not None:
                return f"task {t}: {why}"
        return None
    return probe


def synced(api: httpx.Client, name: str,
           sources: Sequence[str] | None = None) -> Callable[[], str | None]:
    """Every (chosen) subtask Running in Sync and caught up with its source."""
    def probe() -> str | None:
        data = status(api, name, sources)
        ok = data and all(d["stage"] == "Running" and d["unit"] == "Sync"
                          and (d.get("sync_status") or {}).get("synced") for d in data)
        return None if ok else f"not synced:\n    {brief(data)}"
    return probe


# --- comparing the target with the sources ------------------------------------------------

@dataclass(frozen=True)
class Copy:
    """Target table `tgt` must hold exactly the rows of the source tables `parts` (one for
    a plain copy, several for merged shards; their keys must not overlap)."""

    tgt: tuple[str, str]
    parts: tuple[tuple[MariaDBServer, str, str], ...]
    where: str = ""  # only the source rows that match (e.g. rows after a start time)

    @staticmethod
    def of(server: MariaDBServer, schema: str, table: str, tschema: str,
           ttable: str | None = None, where: str = "") -> Copy:
        return Copy((tschema, ttable or table), ((server, schema, table),), where)


def _fetch(server: MariaDBServer, schema: str, table: str, cols: Sequence[Any],
           where: str) -> list[tuple[bytes | None, ...]]:
    if not where:
        return fetch_rows(server, schema, table, cols)
    exprs = ", ".join(_expr(c) for c in cols)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT {exprs} FROM `{schema}`.`{table}` WHERE {where}")
        return [tuple(r) for r in cur.fetchall()]


def diff_copy(target: MariaDBServer, c: Copy) -> str | None:
    """None when the target table holds the parts' rows exactly, else a report."""
    ts, tt = c.tgt
    name = " + ".join(f"{s.name}:{sc}.{t}" for s, sc, t in c.parts) + f" -> {ts}.{tt}"
    t_cols = table_columns(target, ts, tt)
    if not t_cols:
        return f"{name}: target table does not exist"
    names = [col.name for col in t_cols]
    src_rows: list[tuple[bytes | None, ...]] = []
    key: list[str] = []
    for server, schema, table in c.parts:
        s_cols = table_columns(server, schema, table)
        if [col.name for col in s_cols] != names:
            return (f"{name}: columns differ: source {server.name}:{schema}.{table} "
                    f"{[col.name for col in s_cols]}, target {names}")
        key = key or primary_key(server, schema, table)
        src_rows += _fetch(server, schema, table, s_cols, c.where)
    d = diff_rows(names, key, src_rows, fetch_rows(target, ts, tt, t_cols))
    pair: Pair = ((c.parts[0][1], c.parts[0][2]), (ts, tt))
    return None if d.equal else f"{name}:\n" + format_diff(pair, d)


def diff_all(target: MariaDBServer, copies: Sequence[Copy]) -> str | None:
    reports = []
    for c in copies:
        try:
            r = diff_copy(target, c)
        except pymysql.MySQLError as exc:  # a DDL between reading columns and rows
            r = f"{c.tgt}: comparison failed: {exc}"
        if r is not None:
            reports.append(r)
    return "\n".join(reports) if reports else None


def equal_pairs(source: MariaDBServer, target: MariaDBServer,
                pairs: Sequence[Pair]) -> str | None:
    reports = compare_tables(source, target, pairs)
    return "\n".join(reports) if reports else None


def caught_up(api: httpx.Client, target: MariaDBServer, tasks: Sequence[str],
              copies: Sequence[Copy], sync: bool = True) -> Callable[[], str | None]:
    """The probe of a replicating scenario: the tasks Running in Sync and caught up (when
    `sync`), and the target equal to the sources row by row."""
    def probe() -> str | None:
        if sync:
            for t in tasks:
                if (why := synced(api, t)()) is not None:
                    return f"task {t} {why}"
        return diff_all(target, copies)
    return probe


# --- writes during the task ---------------------------------------------------------------

class RowWriter(threading.Thread):
    """Small transactions on the given tables of one server until stopped: each inserts a
    new row (ids from id_base + 100_000 up, round robin over the tables) and, unless
    insert_only, updates one of the first `rows` rows and deletes an older new row.
    Ids stay within [id_base, id_base + 1_000_000), so writers with different id_base
    never collide (shards merged into one table)."""

    def __init__(self, server: MariaDBServer, tables: Sequence[tuple[str, str]],
                 id_base: int = 0, rows: int = 50, insert_only: bool = False,
                 pause: float = 0.01, first: int = 0) -> None:
        super().__init__(daemon=True, name=f"writer-{server.name}")
        self.server, self.tables, self.id_base = server, list(tables), id_base
        self.rows, self.insert_only, self.pause = rows, insert_only, pause
        self.first = first  # the number of the first transaction (again() goes on)
        self.done = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def again(self) -> RowWriter:
        """A new writer (a thread runs once) that goes on where this one stopped."""
        return RowWriter(self.server, self.tables, self.id_base, self.rows,
                         self.insert_only, self.pause, self.first + self.done)

    def run(self) -> None:
        rnd = random.Random(self.id_base + self.first)
        i = self.first
        try:
            with self.server.connect() as conn, conn.cursor() as cur:
                while not self._halt.is_set():
                    schema, table = self.tables[i % len(self.tables)]
                    t = f"`{schema}`.`{table}`"
                    new = self.id_base + 100_000 + i
                    cur.execute("BEGIN")
                    cur.execute(f"INSERT INTO {t} (id, k, v) VALUES (%s, %s, %s)",
                                (new, new % 97, f"w{new}"))
                    if not self.insert_only:
                        old = self.id_base + 1 + rnd.randrange(self.rows)
                        cur.execute(f"UPDATE {t} SET k = k + 1, v = %s WHERE id = %s",
                                    (f"u{new}", old))
                        if i >= 3 * len(self.tables) and i % 3 == 0:
                            cur.execute(f"DELETE FROM {t} WHERE id = %s",
                                        (new - 3 * len(self.tables),))
                    cur.execute("COMMIT")
                    i += 1
                    self.done += 1
                    if self.pause:
                        time.sleep(self.pause)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> int:
        self._halt.set()
        self.join(30)
        if self.error is not None:
            raise AssertionError(f"writer on {self.server.name} failed: {self.error!r}")
        return self.done


@contextlib.contextmanager
def writing(*writers: RowWriter) -> Any:
    """Writers running for the block; stopped (and their errors raised) after it."""
    for w in writers:
        w.start()
    try:
        yield writers
    finally:
        for w in writers:
            w._halt.set()
        for w in writers:
            w.stop()


def wait_writes(writers: Sequence[RowWriter], n: int, timeout: float = 30.0) -> None:
    """Until every writer has committed at least n more transactions."""
    goal = [w.done + n for w in writers]
    deadline = time.monotonic() + timeout
    while any(w.done < g for w, g in zip(writers, goal, strict=True)):
        for w in writers:
            if w.error is not None:
                raise AssertionError(f"writer on {w.server.name} failed: {w.error!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"writers did not write {n} transactions in {timeout} s")
        time.sleep(0.05)


# --- running the parts of a scenario at once -----------------------------------------------

def run_parallel(srv: DMServer, parts: dict[str, Callable[[httpx.Client], None]]) -> None:
    """Run each part in its own thread with its own API client; when any fails, raise one
    AssertionError naming every failed part with its error (so one known bug does not hide
    what the other parts found)."""
    def one(fn: Callable[[httpx.Client], None]) -> None:
        with srv.client() as c:
            fn(c)

    failures = []
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        futures = {name: pool.submit(one, fn) for name, fn in parts.items()}
        for name, f in futures.items():
            exc = f.exception()
            if exc is not None:
                tb = "".join(traceback.format_exception(exc)[-3:])
                failures.append(f"[{name}] {type(exc).__name__}: {exc}\n{tb}")
    if failures:
        raise AssertionError(f"{len(failures)} of {len(parts)} parts failed:\n\n"
                             + "\n\n".join(failures))


def meta_tables(target: MariaDBServer, meta: str, task: str) -> list[str]:
    return sorted(str(r[0]) for r in target.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
        "TABLE_NAME LIKE %s", (meta, task.replace("_", "\\_") + "\\_%")))


# --- the scenario's context (the `scn` fixture of conftest.py) -----------------------------

@dataclass
class Scn:
    """One scenario's names (all ending with its tag), servers and API client."""

    tag: str
    srv: DMServer
    api: httpx.Client
    source1: MariaDBServer
    source2: MariaDBServer
    target: MariaDBServer
    cleanup: list[MariaDBServer] = field(default_factory=list)
    servers: dict[str, MariaDBServer] = field(default_factory=dict)  # by source name

    def db(self, prefix: str) -> str:
        """A schema name of this scenario (source or target side)."""
        return f"{prefix}_{self.tag}"

    def name(self, prefix: str) -> str:
        """A task or source name of this scenario."""
        return f"{prefix}-{self.tag}"

    @property
    def meta(self) -> str:
        return f"meta_{self.tag}"

    def sources(self, *servers: MariaDBServer, workers: Sequence[str] = ()) -> list[Src]:
        """Register one source per server (s1-<tag>, s2-<tag>, ...), bound to `workers`
        in order when given, else to free workers."""
        out = []
        for i, server in enumerate(servers or (self.source1, self.source2), start=1):
            src = Src(self.name(f"s{i}"), server)
            create_source(self.api, src, workers[i - 1] if i <= len(workers) else None)
            if server not in (self.source1, self.source2, self.target, *self.cleanup):
                self.cleanup.append(server)
            out.append(src)
            self.servers[src.name] = server
        return out


def snapshot_cut(target: MariaDBServer, tables: Iterable[tuple[str, str]],
                 id_base: int = 0) -> str:
    """For a dump taken while an insert-only RowWriter(id_base) ran: a WHERE clause that
    selects, on the source, the rows a consistent snapshot holds, i.e. the rows before the
    writer's first transaction missing from the target. Comparing with it proves the
    snapshot was one point in time across the tables (no gap, nothing after the cut)."""
    first, last = id_base + 100_000, id_base + 1_000_000
    top = first - 1
    for ts, tt in tables:
        [(m,)] = target.query(f"SELECT MAX(id) FROM `{ts}`.`{tt}` WHERE id BETWEEN "
                              f"{first} AND {last - 1}")
        if m is not None:
            top = max(top, int(m))
    return f"id <= {top}"


# --- common set-ups ------------------------------------------------------------------------

def incremental_setup(scn: Scn, prefix: str, tables: tuple[str, ...] = ("t",),
                      rows: int = 50) -> tuple[str, dict[str, str], dict[str, Any]]:
    """On both sources: schema `<prefix>_<tag>` with `tables`, the same tables empty on the
    target (one schema per source), the start positions, then `rows` rows per table.
    Returns (schema, target schema by source, source_conf entries by source)."""
    schema = scn.db(prefix)
    tschemas, confs = {}, {}
    for i, (name, server) in enumerate(scn.servers.items(), 1):
        make_tables(server, schema, tables)
        tschemas[name] = scn.db(f"{prefix}c{i}")
        copy_structure(server, schema, tables, scn.target, tschemas[name])
        confs[name] = conf(name, master_pos(server))
        for t in tables:
            insert_rows(server, schema, t, range(1, rows + 1))
    return schema, tschemas, confs


def copies_of(scn: Scn, schema: str, tschemas: dict[str, str],
              tables: tuple[str, ...] = ("t",), where: str = "") -> list[Copy]:
    return [Copy.of(scn.servers[n], schema, t, tschemas[n], where=where)
            for n in tschemas for t in tables]


def replicating(target: MariaDBServer, tables: Iterable[tuple[str, str]],
                id_base: int = 0) -> Callable[[], str | None]:
    """Probe: each target table holds at least one row a RowWriter(id_base) wrote after the
    start, i.e. the sync does apply (a subtask shows Running/Sync from the moment its sync
    unit starts, before its sync worker has read anything)."""
    first = id_base + 100_000
    refs = list(tables)

    def probe() -> str | None:
        missing = [f"{s}.{t}" for s, t in refs if not target.query(
            f"SELECT 1 FROM `{s}`.`{t}` WHERE id >= {first} LIMIT 1")]
        return f"no replicated write yet in {missing}" if missing else None
    return probe
