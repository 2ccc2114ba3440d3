"""A seeded, randomized DML/DDL workload for a source MariaDB, to prove replication.

    wl = Workload(server, "wl", seed=7, with_ddl=True)
    wl.setup()                       # CREATE DATABASE + the tables below
    wl.run(500)                      # 500 operations, synchronously
    load = wl.run_in_thread(rate=50)  # or in the background, 50 ops/s, until
    load.stop()                      # ... stop() (returns the operations done)
    wl.tables()                      # current table names (DDL creates and renames some)

Tables: `t_int` (INT PK), `t_comp` (composite PK, binary-collated VARCHAR part), `t_uk`
(no PK; a UNIQUE KEY over NULL-able columns) and `t_types` (every type of
tests/mariadb/test_type_fidelity.py: ints of all widths signed/unsigned, DECIMAL, FLOAT/DOUBLE,
BIT, ENUM/SET, temporal types with fractions and zero dates, YEAR, utf8mb4/latin1/gbk
strings with emoji, binary strings with arbitrary bytes, JSON, NULLs and generated
columns). Operations: single and multi-row INSERTs, UPDATEs (also of key columns, also
ranges), DELETEs, multi-statement transactions (some rolled back) and, with `with_ddl`,
a DDL step every `ddl_every` operations (ADD COLUMN FIRST/AFTER, DROP COLUMN, MODIFY
COLUMN widening, CREATE TABLE, RENAME TABLE).

The generator keeps a model of the keys that exist, so every statement succeeds and
updates/deletes hit real rows. Everything follows from `seed`: the same seed gives the
same statements and the same data; only a background load's timing (how many operations
happen before stop()) varies. Sessions use sql_mode='' (zero dates allowed) and UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymysql

from testbed.mariadb import MariaDBServer

Gen = Callable[[random.Random], Any]
Key = tuple[Any, ...]

SESSION_SQL = "SET SESSION sql_mode = '', time_zone = '+00:00'"


# --- value generators ------------------------------------------------------------------------

_TEXT_ALPHABET = [*"abcdefXYZ 0123456789'\"\\\n\r\t\x00%_`,;",
                  "é", "ü", "ÿ", "ß", "中", "文", "😀", "🎉", "𝄞", "ñ"]
_LATIN1_ALPHABET = [*"abcXYZ 019'\"\\\n,", "é", "ü", "ÿ", "½", "ß"]
_GBK_ALPHABET = [*"abcXYZ 019'\\", "中", "文", "汉", "字"]
_KEY_ALPHABET = [*"abcdefghijklmnopqrstuvwxyzABC0123456789-_", "é", "😀", "中"]


def _maybe_null(gen: Gen, p_null: float = 0.1) -> Gen:
    return lambda r: None if r.random() < p_null else gen(r)


def _edge_or(edges: list[Any], gen: Gen, p_edge: float = 0.25) -> Gen:
    return lambda r: r.choice(edges) if r.random() < p_edge else gen(r)


def _int(lo: int, hi: int) -> Gen:
    return _maybe_null(_edge_or([lo, hi, 0, 1, -1 if lo < 0 else 2],
                                lambda r: r.randint(lo, hi)))


def _text(alphabet: list[str], max_len: int, typical: int = 24) -> Gen:
    # Mostly short, sometimes up to the column's limit.
    def gen(r: random.Random) -> str:
        n = r.randint(0, max_len) if r.random() < 0.1 else r.randint(0, min(typical, max_len))
        return "".join(r.choice(alphabet) for _ in range(n))
    return _maybe_null(gen)


def _bytes(max_len: int, typical: int = 32) -> Gen:
    def gen(r: random.Random) -> bytes:
        n = r.randint(0, max_len) if r.random() < 0.1 else r.randint(0, min(typical, max_len))
        return r.randbytes(n)
    return _maybe_null(_edge_or([b"", b"\x00", bytes(range(min(256, max_len)))], gen))


def _float32(r: random.Random) -> float:
    # A value FLOAT holds exactly, so what is stored follows from the seed alone.
    x: float = struct.unpack("<f", struct.pack("<f", r.uniform(-1e6, 1e6)))[0]
    return x


def _decimal65(r: random.Random) -> str:
    sign = "-" if r.random() < 0.5 else ""
    return f"{sign}{r.randint(0, 10**35 - 1)}.{r.randint(0, 10**30 - 1):030d}"


def _date(r: random.Random) -> str:
    return f"{r.randint(1000, 9999):04d}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"


def _time6(r: random.Random) -> str:
    sign = "-" if r.random() < 0.3 else ""
    return (f"{sign}{r.randint(0, 838)}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}."
            f"{r.randint(0, 999999):06d}")


def _datetime6(r: random.Random) -> str:
    return (f"{_date(r)} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:"
            f"{r.randint(0, 59):02d}.{r.randint(0, 999999):06d}")


def _timestamp6(r: random.Random) -> str:
    t = dt.datetime.fromtimestamp(r.randint(1, 2**31 - 1), dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f".{r.randint(0, 999999):06d}"


def _json_value(r: random.Random, depth: int = 0) -> Any:
    kind = r.randint(0, 6 if depth < 2 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return r.choice([True, False])
    if kind == 2:
        return r.randint(-(2**53), 2**53)
    if kind == 3:
        return r.choice([0.5, -1.25, 1e-7, 3.14159])
    if kind == 4:
        return "".join(r.choice(_TEXT_ALPHABET) for _ in range(r.randint(0, 12)))
    if kind == 5:
        return [_json_value(r, depth + 1) for _ in range(r.randint(0, 4))]
    return {f"k{i}{r.choice(_KEY_ALPHABET)}": _json_value(r, depth + 1)
            for i in range(r.randint(0, 4))}


def _set_value(r: random.Random) -> str:
    return ",".join(v for v in ("x", "y", "z", "ü") if r.random() < 0.5)


# Column name -> (type, generator) of t_types, in table order; the edge values come from
# tests/mariadb/test_type_fidelity.py.
TYPE_COLUMNS: list[tuple[str, str, Gen]] = [
    ("ti", "TINYINT", _int(-128, 127)),
    ("tiu", "TINYINT UNSIGNED", _int(0, 255)),
    ("si", "SMALLINT", _int(-32768, 32767)),
    ("siu", "SMALLINT UNSIGNED", _int(0, 65535)),
    ("mi", "MEDIUMINT", _int(-8388608, 8388607)),
    ("miu", "MEDIUMINT UNSIGNED", _int(0, 16777215)),
    ("i", "INT", _int(-2147483648, 2147483647)),
    ("iu", "INT UNSIGNED", _int(0, 4294967295)),
    ("bi", "BIGINT", _int(-(2**63), 2**63 - 1)),
    ("biu", "BIGINT UNSIGNED", _int(0, 2**64 - 1)),
    ("dec65", "DECIMAL(65,30)", _maybe_null(_edge_or(
        ["-99999999999999999999999999999999999.999999999999999999999999999999",
         "0.000000000000000000000000000001", "0", "-0.000000000000000000000000000001"],
        _decimal65))),
    ("dec0", "DECIMAL(10,0) UNSIGNED", _int(0, 9999999999)),
    ("f", "FLOAT", _maybe_null(_edge_or(
        [0.0, -1.5, 3.4028234663852886e38, 1.401298464324817e-45, 1.1754943508222875e-38,
         16777217.0, 0.1], _float32))),
    ("d", "DOUBLE", _maybe_null(_edge_or(
        [0.0, -0.0, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308, 0.1,
         1.2345678901234567], lambda r: r.uniform(-1e300, 1e300) * r.random()))),
    ("b1", "BIT(1)", _maybe_null(lambda r: r.randint(0, 1))),
    ("b64", "BIT(64)", _maybe_null(_edge_or([0, 1, 1 << 63, 2**64 - 1],
                                            lambda r: r.getrandbits(64)))),
    ("e", "ENUM('a','b''q','c,d','ü',' sp')",
     _maybe_null(lambda r: r.choice(["a", "b'q", "c,d", "ü", " sp", ""]))),  # '' = index 0
    ("s", "SET('x','y','z','ü')", _maybe_null(_set_value)),
    ("dd", "DATE", _maybe_null(_edge_or(["0000-00-00", "1000-01-01", "9999-12-31",
                                         "2024-02-29"], _date))),
    ("t6", "TIME(6)", _maybe_null(_edge_or(["-838:59:59.000000", "838:59:59.000000",
                                            "-00:00:00.000001", "00:00:00"], _time6))),
    ("dt6", "DATETIME(6)", _maybe_null(_edge_or(
        ["0000-00-00 00:00:00.000000", "1000-01-01 00:00:00.000000",
         "9999-12-31 23:59:59.999999"], _datetime6))),
    ("ts6", "TIMESTAMP(6) NULL DEFAULT NULL", _maybe_null(_edge_or(
        ["0000-00-00 00:00:00.000000", "1970-01-01 00:00:01.000000",
         "2038-01-19 03:14:07.999999"], _timestamp6))),
    ("y", "YEAR", _maybe_null(_edge_or([0, 1901, 2155], lambda r: r.randint(1901, 2155)))),
    ("ch", "CHAR(20)", _text(_TEXT_ALPHABET, 20, 10)),
    ("vc", "VARCHAR(300)", _text(_TEXT_ALPHABET, 300)),
    ("tx", "TEXT", _text(_TEXT_ALPHABET, 2000, 60)),
    ("mt", "MEDIUMTEXT", _text(_TEXT_ALPHABET, 4000, 60)),
    ("lat", "VARCHAR(50) CHARACTER SET latin1", _text(_LATIN1_ALPHABET, 50)),
    ("gbk", "VARCHAR(20) CHARACTER SET gbk", _text(_GBK_ALPHABET, 20)),
    ("bin16", "BINARY(16)", _bytes(16)),
    ("vb", "VARBINARY(300)", _bytes(300)),
    ("bl", "BLOB", _bytes(3000, 64)),
    ("lb", "LONGBLOB", _bytes(20000, 64)),
    ("j", "JSON", _maybe_null(lambda r: json.dumps(_json_value(r, 1), ensure_ascii=False))),
]


# --- the model -------------------------------------------------------------------------------

@dataclass
class TableModel:
    """What the generator knows of one table: insertable columns and the keys that exist."""

    name: str
    key: list[str]  # the columns that identify a row (PK, or `rid` on the table without one)
    cols: dict[str, Gen]  # insertable columns, key columns included
    new_key: Callable[[random.Random, TableModel], Key]
    rows: dict[Key, Any] = field(default_factory=dict)  # key -> unique-key pair (t_uk)
    used_pairs: set[tuple[Any, Any]] = field(default_factory=set)  # t_uk's non-NULL (u, w)
    value_cols: list[str] = field(default_factory=list)  # updatable non-key columns

    def copy_state(self) -> tuple[dict[Key, Any], set[tuple[Any, Any]], dict[str, Gen]]:
        return dict(self.rows), set(self.used_pairs), dict(self.cols)

    def restore(self, state: tuple[dict[Key, Any], set[tuple[Any, Any]],
                                   dict[str, Gen]]) -> None:
        self.rows, self.used_pairs, self.cols = dict(state[0]), set(state[1]), dict(state[2])


def _int_key(hi: int) -> Callable[[random.Random, TableModel], Key]:
    def gen(r: random.Random, t: TableModel) -> Key:
        while True:
            k = (r.randint(1, hi),)
            if k not in t.rows:
                return k
    return gen


def _comp_key(r: random.Random, t: TableModel) -> Key:
    while True:
        k = (r.randint(-5, 50), "".join(r.choice(_KEY_ALPHABET) for _ in range(r.randint(1, 6))))
        if k not in t.rows:
            return k


_UK_WORDS = [f"w{i}" for i in range(20)]


def _q(name: str) -> str:
    return f"`{name}`"


class Workload:
    """See the module docstring. Not thread-safe: use `run` or one background load at a
    time."""

    def __init__(self, server: MariaDBServer, schema: str, seed: int, *,
                 with_ddl: bool = False, ddl_every: int = 40) -> None:
        self.server = server
        self.schema = schema
        self.seed = seed
        self.with_ddl = with_ddl
        self.ddl_every = ddl_every
        self.rng = random.Random(seed)
        self.ops_done = 0
        self.ddl_done: list[str] = []
        self._ddl_step = 0
        self._models: dict[str, TableModel] = {}

    # -- setup --

    def setup(self) -> Workload:
        self.server.execute(f"DROP DATABASE IF EXISTS {_q(self.schema)}")
        self.server.execute(f"CREATE DATABASE {_q(self.schema)} DEFAULT CHARSET utf8mb4")
        ddl = [
            "CREATE TABLE t_int (id INT NOT NULL PRIMARY KEY, v VARCHAR(64), n INT, "
            "f DOUBLE, KEY n (n))",
            "CREATE TABLE t_comp (a INT NOT NULL, b VARCHAR(20) COLLATE utf8mb4_bin NOT NULL, "
            "c DATETIME(3), v INT, PRIMARY KEY (a, b))",
            # No primary key; NULLs in the unique key make rows with equal (u, w) legal.
            "CREATE TABLE t_uk (rid INT NOT NULL, u INT NULL, w VARCHAR(16) NULL, v TEXT, "
            "UNIQUE KEY uk (u, w))",
            "CREATE TABLE t_types (id INT NOT NULL PRIMARY KEY, "
            + ", ".join(f"{_q(n)} {t}" for n, t, _ in TYPE_COLUMNS)
            + ", gv BIGINT AS (i * 2) VIRTUAL, gs VARCHAR(310) AS (CONCAT(vc, '!')) STORED)",
        ]
        with self._connect() as conn, conn.cursor() as cur:
            for stmt in ddl:
                cur.execute(stmt)
        small_text = _text(_TEXT_ALPHABET, 64, 16)
        self._models = {
            "t_int": TableModel("t_int", ["id"], {
                "id": lambda r: None, "v": small_text, "n": _int(-1000, 1000),
                "f": _maybe_null(lambda r: round(r.uniform(-1e6, 1e6), 3))},
                _int_key(1_000_000), value_cols=["v", "n", "f"]),
            "t_comp": TableModel("t_comp", ["a", "b"], {
                "a": lambda r: None, "b": lambda r: None,
                "c": _maybe_null(lambda r: _datetime6(r)[:23]), "v": _int(-100, 100)},
                _comp_key, value_cols=["c", "v"]),
            "t_uk": TableModel("t_uk", ["rid"], {
                "rid": lambda r: None, "u": _maybe_null(lambda r: r.randint(1, 40), 0.3),
                "w": _maybe_null(lambda r: r.choice(_UK_WORDS), 0.3),
                "v": _text(_TEXT_ALPHABET, 200)},
                _int_key(10_000_000), value_cols=["u", "w", "v"]),
            "t_types": TableModel("t_types", ["id"], {
                "id": lambda r: None, **{n: g for n, _, g in TYPE_COLUMNS}},
                _int_key(1_000_000), value_cols=[n for n, _, _ in TYPE_COLUMNS]),
        }
        return self

    def tables(self) -> list[str]:
        """The workload's tables as they are named now (sorted)."""
        return sorted(self._models)

    def pairs(self, target_schema: str | None = None
              ) -> list[tuple[tuple[str, str], tuple[str, str]]]:
        """`assert_same_tables` pairs: each table against the same name in target_schema."""
        tgt = target_schema or self.schema
        return [((self.schema, t), (tgt, t)) for t in self.tables()]

    # -- running --

    def _connect(self) -> pymysql.connections.Connection[Any]:
        conn = self.server.connect(self.schema)
        with conn.cursor() as cur:
            cur.execute(SESSION_SQL)
        return conn

    def run(self, n_ops: int) -> int:
        """Run n_ops operations (a transaction or a DDL step counts as one); returns the
        number of row changes that were committed."""
        with self._connect() as conn, conn.cursor() as cur:
            return sum(self._one_op(cur) for _ in range(n_ops))

    def run_in_thread(self, rate: float, max_ops: int | None = None) -> BackgroundLoad:
        """Start a background load of `rate` operations/s (0 = as fast as possible) until
        `stop()` (or max_ops)."""
        load = BackgroundLoad(self, rate, max_ops)
        load.start()
        return load

    def _one_op(self, cur: pymysql.cursors.Cursor) -> int:
        self.ops_done += 1
        if self.with_ddl and self.ops_done % self.ddl_every == 0:
            self._ddl(cur)
            return 0
        roll = self.rng.random()
        if roll < 0.15:
            return self._transaction(cur)
        stmt, args, n = self._dml()
        cur.execute(stmt, args)
        return n

    def _transaction(self, cur: pymysql.cursors.Cursor) -> int:
        rollback = self.rng.random() < 0.2
        saved = {name: m.copy_state() for name, m in self._models.items()}
        cur.execute("BEGIN")
        n = 0
        for _ in range(self.rng.randint(2, 6)):
            stmt, args, k = self._dml()
            cur.execute(stmt, args)
            n += k
        if rollback:
            cur.execute("ROLLBACK")
            for name, state in saved.items():
                self._models[name].restore(state)
            return 0
        cur.execute("COMMIT")
        return n

    # -- DML --

    def _pick_table(self) -> TableModel:
        names = sorted(self._models)
        return self._models[self.rng.choice(names)]

    def _dml(self) -> tuple[str, list[Any], int]:
        """One statement against the model (which it already updates); returns the SQL,
        its args and the number of rows it changes."""
        t = self._pick_table()
        roll = self.rng.random()
        if len(t.rows) < 5 or roll < 0.30:
            return self._insert(t, 1)
        if roll < 0.45:
            return self._insert(t, self.rng.randint(2, 8))
        if roll < 0.65:
            return self._update_values(t)
        if roll < 0.75:
            return self._update_key(t)
        if roll < 0.80 and t.key == ["id"]:
            return self._update_range(t)
        return self._delete(t)

    def _fix_unique(self, t: TableModel, row: dict[str, Any], old: Any = None) -> Any:
        """On t_uk: NULL out u where (u, w) would repeat a non-NULL pair; returns the pair
        to remember for the row (or None)."""
        if t.name != "t_uk":
            return None
        pair = (row.get("u"), row.get("w"))
        if None in pair:
            return None
        if pair in t.used_pairs and pair != old:
            row["u"] = None
            return None
        return pair

    def _insert(self, t: TableModel, n: int) -> tuple[str, list[Any], int]:
        cols = list(t.cols)
        args: list[Any] = []
        for _ in range(n):
            key = t.new_key(self.rng, t)
            row = {c: g(self.rng) for c, g in t.cols.items() if c not in t.key}
            row.update(zip(t.key, key, strict=True))
            pair = self._fix_unique(t, row)
            if pair is not None:
                t.used_pairs.add(pair)
            t.rows[key] = pair
            args += [row[c] for c in cols]
        values = ", ".join(["(" + ", ".join(["%s"] * len(cols)) + ")"] * n)
        return (f"INSERT INTO {_q(t.name)} ({', '.join(map(_q, cols))}) VALUES {values}",
                args, n)

    def _where(self, t: TableModel, key: Key) -> tuple[str, list[Any]]:
        return " AND ".join(f"{_q(c)} = %s" for c in t.key), list(key)

    def _update_values(self, t: TableModel) -> tuple[str, list[Any], int]:
        key = self.rng.choice(list(t.rows))
        cols = [c for c in t.cols if c not in t.key]
        chosen = self.rng.sample(cols, self.rng.randint(1, min(4, len(cols))))
        row = {c: t.cols[c](self.rng) for c in chosen}
        if t.name == "t_uk" and ("u" in row or "w" in row):
            # The pair needs the row's other half; keep it simple: set both.
            row.setdefault("u", t.cols["u"](self.rng))
            row.setdefault("w", t.cols["w"](self.rng))
            old = t.rows[key]
            pair = self._fix_unique(t, row, old)
            t.used_pairs.discard(old)
            if pair is not None:
                t.used_pairs.add(pair)
            t.rows[key] = pair
        sets = ", ".join(f"{_q(c)} = %s" for c in row)
        where, wargs = self._where(t, key)
        # Rows whose new values equal the old ones log no row event; still counted as one.
        return (f"UPDATE {_q(t.name)} SET {sets} WHERE {where}", [*row.values(), *wargs], 1)

    def _update_key(self, t: TableModel) -> tuple[str, list[Any], int]:
        old = self.rng.choice(list(t.rows))
        new = t.new_key(self.rng, t)
        t.rows[new] = t.rows.pop(old)
        sets = ", ".join(f"{_q(c)} = %s" for c in t.key)
        where, wargs = self._where(t, old)
        return f"UPDATE {_q(t.name)} SET {sets} WHERE {where}", [*new, *wargs], 1

    def _update_range(self, t: TableModel) -> tuple[str, list[Any], int]:
        # Non-key values only, so the model does not change; row count from the model.
        keys = sorted(k[0] for k in t.rows)
        i = self.rng.randrange(len(keys))
        j = min(len(keys) - 1, i + self.rng.randint(1, 10))
        col = next(c for c in t.value_cols if c in t.cols)
        val = t.cols[col](self.rng)
        return (f"UPDATE {_q(t.name)} SET {_q(col)} = %s WHERE id BETWEEN %s AND %s",
                [val, keys[i], keys[j]], j - i + 1)

    def _delete(self, t: TableModel) -> tuple[str, list[Any], int]:
        keys = self.rng.sample(list(t.rows), self.rng.randint(1, min(4, len(t.rows) - 1)))
        for k in keys:
            t.used_pairs.discard(t.rows.pop(k))
        conds = " OR ".join("(" + self._where(t, k)[0] + ")" for k in keys)
        return (f"DELETE FROM {_q(t.name)} WHERE {conds}",
                [a for k in keys for a in k], len(keys))

    # -- DDL --

    def _ddl(self, cur: pymysql.cursors.Cursor) -> None:
        k = self._ddl_step
        self._ddl_step += 1
        step = k % 6
        n = k // 6
        stmts: list[str] = []
        if step == 0:
            t = self._models["t_int"]
            stmts.append(f"ALTER TABLE t_int ADD COLUMN x{n} INT NULL DEFAULT {n} FIRST")
            t.cols[f"x{n}"] = _int(-10, 10)
        elif step == 1:
            t = self._models["t_comp"]
            stmts.append(f"ALTER TABLE t_comp ADD COLUMN y{n} VARCHAR(16) NULL AFTER a")
            t.cols[f"y{n}"] = _text(_TEXT_ALPHABET, 16, 8)
        elif step == 2:
            # Widening only: INT -> BIGINT -> DECIMAL(30,0), TEXT -> MEDIUMTEXT.
            stmts.append(f"ALTER TABLE t_int MODIFY COLUMN v VARCHAR({64 + 32 * (n + 1)})")
            stmts.append(["ALTER TABLE t_comp MODIFY COLUMN v BIGINT",
                          "ALTER TABLE t_comp MODIFY COLUMN v DECIMAL(30,0)",
                          "ALTER TABLE t_uk MODIFY COLUMN v MEDIUMTEXT"][min(n, 2)])
        elif step == 3:
            name = f"t_new{n}"
            stmts.append(f"CREATE TABLE {name} (id INT NOT NULL PRIMARY KEY, v VARCHAR(32), "
                         "n BIGINT)")
            self._models[name] = TableModel(
                name, ["id"], {"id": lambda r: None, "v": _text(_TEXT_ALPHABET, 32, 8),
                               "n": _int(-(2**63), 2**63 - 1)},
                _int_key(100_000), value_cols=["v", "n"])
        elif step == 4:
            old, new = f"t_new{n}", f"t_ren{n}"
            stmts.append(f"RENAME TABLE {old} TO {new}")
            model = self._models.pop(old)
            model.name = new
            self._models[new] = model
        else:
            stmts.append(f"ALTER TABLE t_int DROP COLUMN x{n}")
            del self._models["t_int"].cols[f"x{n}"]
            stmts.append(f"ALTER TABLE t_comp DROP COLUMN y{n}")
            del self._models["t_comp"].cols[f"y{n}"]
        for s in stmts:
            cur.execute(s)
            self.ddl_done.append(s)


class BackgroundLoad:
    """A Workload running in a thread at a fixed operation rate; `stop()` joins it and
    re-raises what it failed with."""

    def __init__(self, workload: Workload, rate: float, max_ops: int | None) -> None:
        self.workload = workload
        self.rate = rate
        self.max_ops = max_ops
        self.ops = 0
        self.rows = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="workload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _main(self) -> None:
        try:
            with self.workload._connect() as conn, conn.cursor() as cur:
                interval = 1.0 / self.rate if self.rate > 0 else 0.0
                next_at = time.monotonic()
                while not self._stop.is_set():
                    if self.max_ops is not None and self.ops >= self.max_ops:
                        break
                    self.rows += self.workload._one_op(cur)
                    self.ops += 1
                    if interval:
                        next_at += interval
                        delay = next_at - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
        except BaseException as exc:
            self._error = exc

    def wait(self, timeout: float | None = None) -> int:
        """Wait for a max_ops load to finish by itself; returns the operations done."""
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self.ops

    def stop(self, timeout: float = 60.0) -> int:
        self._stop.set()
        return self.wait(timeout)
