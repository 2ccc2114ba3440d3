"""mysqlkit.sync.dml and mysqlkit.sync.causality against the target server: random change sequences
applied through build_batch (normal and safe mode, crash replays, parallel lanes) leave the
target equal to an in-memory model."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncmy
import pymysql
import pytest

from mysqlkit.sync.causality import Causality, change_keys
from mysqlkit.sync.dml import RowChange, build_batch
from mysqlkit.upstream import ConnConfig, connect
from testbed.mariadb import MariaDBServer

pytestmark = pytest.mark.mariadb

Value = int | str | None
Row = tuple[Value, ...]

# name → (DDL body, binlog columns, generated indexes, key indexes)
TABLES: dict[str, tuple[str, tuple[str, ...], frozenset[int], tuple[int, ...]]] = {
    "pk": ("`id` INT PRIMARY KEY, `v` VARCHAR(20), `n` INT NULL",
           ("id", "v", "n"), frozenset(), (0,)),
    # Composite key, a string in it, and a generated column in the middle of the row.
    "cpk": ("`a` INT, `b` VARCHAR(10), `g` INT AS (`v` + 1) VIRTUAL, `v` INT, "
            "PRIMARY KEY (`a`, `b`)", ("a", "b", "g", "v"), frozenset({2}), (0, 1)),
    "uk": ("`x` INT NULL, `y` INT NULL, `v` INT, UNIQUE KEY (`x`, `y`)",
           ("x", "y", "v"), frozenset(), (0, 1)),
    "nokey": ("`p` INT, `q` VARCHAR(10) NULL", ("p", "q"), frozenset(), ()),
}


# Tables whose key-preserving updates may share a statement (as the syncer decides: a
# NOT NULL key; cpk's string keys never differ only by case in this test).
MERGE_UPDATES = frozenset({"pk", "cpk"})


def lit(v: Value) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, int):
        return str(v)
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def image(table: str, row: Row) -> tuple[str, ...]:
    """The binlog's row: stored values plus the generated column the source computed."""
    if table == "cpk":
        a, b, v = row
        assert isinstance(v, int)
        return (lit(a), lit(b), lit(v + 1), lit(v))
    return tuple(lit(v) for v in row)


def sort_rows(rows: Sequence[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: [(0, "") if v is None else (1, v) for v in r])


@dataclass
class Model:
    """Expected rows per table: keyed tables as dicts, the others as multisets."""

    pk: dict[int, Row] = field(default_factory=dict)
    cpk: dict[tuple[int, str], Row] = field(default_factory=dict)
    uk: list[Row] = field(default_factory=list)
    nokey: list[Row] = field(default_factory=list)

    def rows(self, table: str) -> list[Row]:
        got: dict[str, Sequence[Row]] = {
            "pk": list(self.pk.values()), "cpk": list(self.cpk.values()),
            "uk": self.uk, "nokey": self.nokey}
        return sort_rows(got[table])


class Generator:
    """Random valid changes (the source could have logged them) and the model they lead to."""

    def __init__(self, schema: str, seed: int, tables: Sequence[str]) -> None:
        self.schema = schema
        self.rnd = random.Random(seed)
        self.tables = list(tables)
        self.model = Model()
        # One columns tuple per table, as a binlog reader would share it between rows.
        self.meta = {t: TABLES[t][1:] for t in TABLES}
        self.last = self.tables[0]

    def change(self, table: str, kind: str, before: Row | None, after: Row | None) -> RowChange:
        cols, skip, key = self.meta[table]
        return RowChange(kind, self.schema, table, cols, skip, key,  # type: ignore[arg-type]
                         None if before is None else image(table, before),
                         None if after is None else image(table, after),
                         merge_updates=table in MERGE_UPDATES)

    def kind(self, size: int) -> str:
        if size == 0:
            return "insert"
        return self.rnd.choices(["insert", "update", "delete"], [4, 4, 3])[0]

    def sequence(self, n: int) -> list[RowChange]:
        return [self.step() for _ in range(n)]

    def step(self) -> RowChange:
        # Bursts on one table, as transactions make them, give runs to merge.
        if self.rnd.random() < 0.3:
            self.last = self.rnd.choice(self.tables)
        table = self.last
        step: Callable[[], RowChange] = getattr(self, "step_" + table)
        return step()

    def step_pk(self) -> RowChange:
        r, m = self.rnd, self.model.pk
        kind = self.kind(len(m))
        if kind == "insert" and len(m) >= 40:
            kind = "delete"

        def new_row(i: int) -> Row:
            return (i, r.choice(["a", "b", "it's", "x\\y", "É"]) + str(r.randint(0, 9)),
                    r.choice([None, r.randint(-5, 5)]))

        free = [i for i in range(60) if i not in m]
        if kind == "insert":
            i = r.choice(free)
            m[i] = new_row(i)
            return self.change("pk", kind, None, m[i])
        old_id = r.choice(list(m))
        old = m.pop(old_id)
        if kind == "delete":
            return self.change("pk", kind, old, None)
        i = r.choice(free) if r.random() < 0.3 else old_id
        m[i] = new_row(i)
        return self.change("pk", kind, old, m[i])

    def step_cpk(self) -> RowChange:
        r, m = self.rnd, self.model.cpk
        kind = self.kind(len(m))
        keys = [(a, b) for a in range(6) for b in ("k", "K2", "z")]
        free = [k for k in keys if k not in m]
        if kind == "insert" and not free:
            kind = "delete"
        if kind == "insert":
            k = r.choice(free)
            m[k] = (*k, r.randint(0, 99))
            return self.change("cpk", kind, None, m[k])
        oldk = r.choice(list(m))
        old = m.pop(oldk)
        if kind == "delete":
            return self.change("cpk", kind, old, None)
        k = r.choice(free) if free and r.random() < 0.3 else oldk
        m[k] = (*k, r.randint(0, 99))
        return self.change("cpk", kind, old, m[k])

    def step_uk(self) -> RowChange:
        r, rows = self.rnd, self.model.uk
        kind = self.kind(len(rows))

        def fresh(exclude: int | None) -> Row:
            while True:
                row = (r.choice([None, 0, 1, 2, 3]), r.choice([None, 0, 1, 2]), r.randint(0, 3))
                if row[0] is None or row[1] is None or not any(
                        o[:2] == row[:2] for i, o in enumerate(rows) if i != exclude):
                    return row

        if kind == "insert":
            row = fresh(None)
            rows.append(row)
            return self.change("uk", kind, None, row)
        i = r.randrange(len(rows))
        old = rows[i]
        if kind == "delete":
            rows.pop(i)
            return self.change("uk", kind, old, None)
        rows[i] = fresh(i)
        return self.change("uk", kind, old, rows[i])

    def step_nokey(self) -> RowChange:
        r, rows = self.rnd, self.model.nokey
        kind = self.kind(len(rows))

        def fresh() -> Row:
            return (r.randint(0, 3), r.choice([None, "a", "b"]))

        if kind == "insert":
            rows.append(fresh())
            return self.change("nokey", kind, None, rows[-1])
        i = r.randrange(len(rows))
        old = rows[i]
        if kind == "delete":
            rows.pop(i)
            return self.change("nokey", kind, old, None)
        rows[i] = fresh()
        return self.change("nokey", kind, old, rows[i])


def create_schema(target: MariaDBServer, schema: str, tables: Sequence[str]) -> None:
    target.execute(f"DROP DATABASE IF EXISTS `{schema}`; CREATE DATABASE `{schema}`")
    for t in tables:
        target.execute(f"CREATE TABLE `{schema}`.`{t}` ({TABLES[t][0]})")


def truncate(target: MariaDBServer, schema: str, tables: Sequence[str]) -> None:
    target.execute(";".join(f"TRUNCATE TABLE `{schema}`.`{t}`" for t in tables))


def read_rows(target: MariaDBServer, schema: str, table: str) -> list[Row]:
    _, cols, skip, _ = TABLES[table]
    names = ",".join(f"`{c}`" for i, c in enumerate(cols) if i not in skip)
    return sort_rows(target.query(f"SELECT {names} FROM `{schema}`.`{table}`"))


def assert_matches(target: MariaDBServer, schema: str, model: Model,
                   tables: Sequence[str]) -> None:
    for t in tables:
        assert read_rows(target, schema, t) == model.rows(t), t


def apply(conn: pymysql.connections.Connection[Any], changes: Sequence[RowChange],
          safe_mode: bool, rnd: random.Random, stats: dict[str, int] | None = None) -> int:
    """Apply in batches of random size, each batch in one transaction; returns how many
    statements merged several rows (`stats["case"]`: how many were merged UPDATEs)."""
    merged = i = 0
    with conn.cursor() as cur:
        while i < len(changes):
            batch = changes[i:i + rnd.randint(1, 40)]
            i += len(batch)
            stmts = build_batch(batch, safe_mode, max_rows=rnd.choice([3, 512]))
            cur.execute("BEGIN")
            for sql in stmts:
                cur.execute(sql)
                merged += "),(" in sql or " OR (" in sql or ("IN (" in sql and "," in sql)
                if stats is not None:
                    stats["case"] = stats.get("case", 0) + ("=CASE WHEN " in sql)
            cur.execute("COMMIT")
    return merged


@pytest.mark.parametrize("safe_mode", [False, True], ids=["normal", "safe"])
def test_random_sequence_matches_model(target: MariaDBServer, safe_mode: bool) -> None:
    schema = f"dml_seq_{'safe' if safe_mode else 'normal'}"
    create_schema(target, schema, list(TABLES))
    gen = Generator(schema, seed=20240601, tables=list(TABLES))
    changes = gen.sequence(2500)
    rnd = random.Random(7)
    stats: dict[str, int] = {}
    with target.connect() as conn:
        assert apply(conn, changes, safe_mode, rnd, stats) > 50
    assert_matches(target, schema, gen.model, list(TABLES))
    assert (stats["case"] > 20) if not safe_mode else stats["case"] == 0
    # Every table saw every kind, key changes included.
    kinds = {(c.table, c.kind) for c in changes}
    assert len(kinds) == 12
    assert any(c.kind == "update" and c.before[:1] != c.after[:1]  # type: ignore[index]
               for c in changes if c.table == "pk")


def test_safe_mode_replay_converges(target: MariaDBServer) -> None:
    """A crash after applying changes[:n] resumes from an older checkpoint m <= n: safe
    mode replays changes[m:] over rows already changed and still reaches the model."""
    schema = "dml_replay"
    tables = ["pk", "cpk"]  # replays are exact only for rows with a non-NULL key
    create_schema(target, schema, tables)
    gen = Generator(schema, seed=99, tables=tables)
    changes = gen.sequence(900)
    rnd = random.Random(3)
    n_all = len(changes)
    windows = [(0, n_all), (n_all // 2, n_all)]
    for _ in range(4):
        n = rnd.randint(1, n_all)
        windows.append((rnd.randint(0, n), n))
    with target.connect() as conn:
        for m, n in windows:
            truncate(target, schema, tables)
            apply(conn, changes[:n], True, rnd)
            apply(conn, changes[m:], True, rnd)
            assert_matches(target, schema, gen.model, tables)


async def test_causality_lanes_match_model(target: MariaDBServer) -> None:
    schema = "dml_lanes"
    n_lanes = 4
    await asyncio.to_thread(create_schema, target, schema, list(TABLES))
    gen = Generator(schema, seed=4242, tables=list(TABLES))
    changes = gen.sequence(2000)
    conns = [await connect(ConnConfig(**target.conn_kwargs())) for _ in range(n_lanes)]
    stats = {"barriers": 0, "flushes": 0, "retries": 0}

    async def run_lane(conn: asyncmy.Connection, batch: list[RowChange]) -> None:
        stmts = build_batch(batch, False)
        for attempt in range(20):
            try:
                async with conn.cursor() as cur:
                    await cur.execute("BEGIN")
                    for sql in stmts:
                        await cur.execute(sql)
                    await cur.execute("COMMIT")
                return
            except asyncmy.errors.OperationalError as exc:
                # Concurrent lanes may deadlock on gap locks; the transaction rolled back
                # whole, so running it again is exact.
                if exc.args[0] not in (1213, 1205) or attempt == 19:
                    raise
                stats["retries"] += 1
                async with conn.cursor() as cur:
                    await cur.execute("ROLLBACK")

    lanes: list[list[RowChange]] = [[] for _ in range(n_lanes)]
    causality = Causality(n_lanes)

    async def flush() -> None:
        await asyncio.gather(*(run_lane(c, b) for c, b in zip(conns, lanes, strict=True) if b))
        for b in lanes:
            b.clear()
        causality.reset()
        stats["flushes"] += 1

    try:
        for conn in conns:
            async with conn.cursor() as cur:
                await cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        pending = 0
        for change in changes:
            keys = change_keys(change)
            lane = causality.assign(change, keys)
            if lane is None:
                stats["barriers"] += 1
                await flush()
                pending = 0
                lane = causality.assign(change, keys)
                assert lane is not None
            lanes[lane].append(change)
            pending += 1
            if pending >= 64:
                await flush()
                pending = 0
        await flush()
    finally:
        for conn in conns:
            await conn.ensure_closed()
    await asyncio.to_thread(assert_matches, target, schema, gen.model, list(TABLES))
    assert stats["barriers"] > 0  # the sequence did exercise conflicts


def test_composite_key_delete_uses_an_index(target: MariaDBServer) -> None:
    """The OR-of-ANDs DELETE a composite key gets must be a range scan, not a full scan."""
    schema = "dml_explain"
    create_schema(target, schema, ["cpk"])
    target.execute(f"INSERT INTO `{schema}`.`cpk` (a, b, v) SELECT seq, 'k', 1 "
                   "FROM seq_1_to_2000", database=schema)
    target.execute(f"ANALYZE TABLE `{schema}`.`cpk`")
    gen = Generator(schema, seed=1, tables=["cpk"])
    dels = [gen.change("cpk", "delete", (i, "k", 1), None) for i in (5, 70, 900)]
    [sql] = build_batch(dels, False)
    assert sql.startswith("DELETE FROM `dml_explain`.`cpk` WHERE (`a`=5 AND `b`='k') OR")
    with target.connect() as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("EXPLAIN " + sql)
        plan = cur.fetchall()
    assert plan[0]["type"] == "range" and plan[0]["key"] == "PRIMARY", plan
    assert target.execute(sql) == 3
