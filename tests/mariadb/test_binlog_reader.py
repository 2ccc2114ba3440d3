"""The binlog reader (mysqlkit.binlog.reader) and the row decoder (mysqlkit.binlog.rowcodec)
on MariaDB.

Shared servers: schemas br_*. A private server (binlog_row_metadata=FULL) serves the tests
that purge binlogs, look for a start time, or freeze the server.
"""

from __future__ import annotations

import os
import signal
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from errors import DMError
from mysqlkit.binlog.reader import (
    BinlogReader,
    Change,
    Commit,
    GtidSet,
    Heartbeat,
    QueryChange,
    RowsChange,
    Start,
    find_start_by_time,
)
from mysqlkit.binlog.rowcodec import APPLY_SESSION_SQL, float32_text
from mysqlkit.position import BinlogPosition
from mysqlkit.upstream import ConnConfig
from testbed.mariadb import MariaDBServer

pytestmark = pytest.mark.timeout(180)

_reader_ids = iter(range(7100, 7999))


def cfg_of(server: MariaDBServer) -> ConnConfig:
    return ConnConfig(**server.conn_kwargs())


def master_pos(server: MariaDBServer) -> BinlogPosition:
    [(name, pos, *_)] = server.query("SHOW MASTER STATUS")
    [(gtid,)] = server.query("SELECT @@gtid_binlog_pos")
    return BinlogPosition(str(name), int(pos), str(gtid))


def read_all(server: MariaDBServer, start: Start, schema_prefix: str = "br_",
             **kw: Any) -> list[Change]:
    """Every change up to the end of the binlog (non-blocking), keeping only rows and
    statements of our schemas and the commits."""
    kw.setdefault("want_table", lambda s, t: s.startswith(schema_prefix))
    out: list[Change] = []
    with BinlogReader(cfg_of(server), next(_reader_ids), start, blocking=False, **kw) as r:
        for ch in r:
            if isinstance(ch, QueryChange) and schema_prefix not in ch.sql:
                continue
            out.append(ch)
    return out


def summary(changes: Sequence[Change]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for ch in changes:
        if isinstance(ch, RowsChange):
            out.append((ch.table, ch.kind, ch.updates if ch.kind == "update" else ch.rows))
        elif isinstance(ch, QueryChange):
            out.append(("query", ch.sql))
        elif isinstance(ch, Commit):
            out.append(("commit",))
    return out


# --- pure units ----------------------------------------------------------------------------


def test_float32_text_is_shortest_round_trip() -> None:
    for x in (0.1, 3.4028234663852886e38, -3.4028234663852886e38, 1.1754943508222875e-38,
              -123.456, 1e-10, 16777217.0, 0.0, 7.0):
        f32 = struct.unpack("<f", struct.pack("<f", x))[0]
        text = float32_text(f32)
        assert struct.unpack("<f", struct.pack("<f", float(text)))[0] == f32
        assert len(text) <= len(repr(f32))
    assert float32_text(struct.unpack("<f", struct.pack("<f", 0.1))[0]) == "0.1"


def test_gtid_set_arithmetic() -> None:
    m = GtidSet.parse("0-101-5,1-102-3", "mariadb")
    m.add_mariadb(0, 101, 6)
    m.add_mariadb(2, 7, 1)
    assert str(m) == "0-101-6,1-102-3,2-7-1"
    u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    s = GtidSet.parse(f"{u.upper()}:1-5:8-9", "mysql")
    s.add_mysql(u, 6)
    assert str(s) == f"{u}:1-6:8-9"
    s.add_mysql(u, 7)
    assert str(s) == f"{u}:1-9"
    s.add_mysql(u, 11)
    assert str(s) == f"{u}:1-9:11"


# --- events, order, resume points ----------------------------------------------------------


def test_events_kinds_order_and_resume_points(source1: MariaDBServer) -> None:
    source1.execute("DROP DATABASE IF EXISTS br_ev; CREATE DATABASE br_ev; "
                    "CREATE TABLE br_ev.t (id INT PRIMARY KEY, v VARCHAR(20)); "
                    "CREATE TABLE br_ev.skip (id INT PRIMARY KEY)")
    start = master_pos(source1)
    source1.execute("INSERT INTO br_ev.t VALUES (1, 'a'), (2, 'b')")
    source1.execute("INSERT INTO br_ev.skip VALUES (1)")
    source1.execute("UPDATE br_ev.t SET id = 10, v = 'k' WHERE id = 1")  # key change
    source1.execute("BEGIN; UPDATE br_ev.t SET v = 'bb' WHERE id = 2; "
                    "INSERT INTO br_ev.skip VALUES (2); DELETE FROM br_ev.t WHERE id = 10; "
                    "COMMIT")
    source1.execute("ALTER TABLE br_ev.t ADD COLUMN w INT")
    source1.execute("INSERT INTO br_ev.t VALUES (3, NULL, -7)")
    source1.execute("DELETE FROM br_ev.t")
    end = master_pos(source1)

    want = lambda s, t: s == "br_ev" and t == "t"  # noqa: E731
    changes = read_all(source1, Start.at(start), want_table=want)
    assert summary(changes) == [
        ("t", "insert", [("1", "_binary'a'"), ("2", "_binary'b'")]), ("commit",),
        ("commit",),  # the skipped table's transaction: no rows, still a commit
        ("t", "update", [(("1", "_binary'a'"), ("10", "_binary'k'"))]), ("commit",),
        ("t", "update", [(("2", "_binary'b'"), ("2", "_binary'bb'"))]),
        ("t", "delete", [("10", "_binary'k'")]), ("commit",),
        ("query", "ALTER TABLE br_ev.t ADD COLUMN w INT"),
        ("t", "insert", [("3", "NULL", "-7")]), ("commit",),
        ("t", "delete", [("2", "_binary'bb'", "NULL"), ("3", "NULL", "-7")]), ("commit",),
    ]
    rows = [c for c in changes if isinstance(c, RowsChange)]
    assert {c.column_count for c in rows[:4]} == {2} and rows[-1].column_count == 3
    assert all(c.schema == "br_ev" and c.timestamp > 0 for c in rows)
    ddl = next(c for c in changes if isinstance(c, QueryChange))
    assert ddl.schema == ""  # no current database in that session

    # Positions only grow, end at the master's position with its GTID set.
    marks = [c.pos for c in changes if isinstance(c, Commit | QueryChange)]
    assert [p.binlog_pos for p in marks] == sorted(p.binlog_pos for p in marks)
    assert marks[-1] == end

    # Every resume point gives exactly the rest.
    for i, ch in enumerate(changes):
        if isinstance(ch, Commit | QueryChange) and i in (1, 7, 8):
            rest = read_all(source1, Start.at(ch.pos), want_table=want)
            assert summary(rest) == summary(changes[i + 1:])


def test_gtid_mode_start(source1: MariaDBServer) -> None:
    source1.execute("DROP DATABASE IF EXISTS br_gtid; CREATE DATABASE br_gtid; "
                    "CREATE TABLE br_gtid.t (id INT PRIMARY KEY)")
    source1.execute("INSERT INTO br_gtid.t VALUES (1)")
    start = master_pos(source1)
    source1.execute("INSERT INTO br_gtid.t VALUES (2)")
    source1.execute("INSERT INTO br_gtid.t VALUES (3)")
    end = master_pos(source1)
    changes = read_all(source1, Start(gtid=start.gtid), gtid_mode=True, flavor=None)
    assert summary(changes) == [("t", "insert", [("2",)]), ("commit",),
                                ("t", "insert", [("3",)]), ("commit",)]
    commits = [c for c in changes if isinstance(c, Commit)]
    assert commits[-1].pos == end
    # A commit's GTID set is a resume point too.
    rest = read_all(source1, Start(gtid=commits[0].pos.gtid), gtid_mode=True)
    assert summary(rest) == [("t", "insert", [("3",)]), ("commit",)]


def test_heartbeat_when_caught_up(source1: MariaDBServer) -> None:
    source1.execute("DROP DATABASE IF EXISTS br_hb; CREATE DATABASE br_hb; "
                    "CREATE TABLE br_hb.t (id INT PRIMARY KEY)")
    start = master_pos(source1)
    source1.execute("INSERT INTO br_hb.t VALUES (1)")
    seen: list[Change] = []
    t0 = time.monotonic()
    with BinlogReader(cfg_of(source1), next(_reader_ids), Start.at(start), blocking=True,
                      heartbeat=0.3, want_table=lambda s, t: s == "br_hb") as reader:
        for ch in reader:
            seen.append(ch)
            if isinstance(ch, Heartbeat):
                if any(isinstance(c, RowsChange) and c.rows == [("2",)] for c in seen):
                    break
                # Caught up: a new transaction arrives on the open stream.
                source1.execute("INSERT INTO br_hb.t VALUES (2)")
    assert time.monotonic() - t0 < 20
    kinds = [type(c).__name__ for c in seen]
    assert kinds[:3] == ["RowsChange", "Commit", "Heartbeat"]
    assert isinstance(seen[2], Heartbeat) and seen[2].pos == seen[1].pos  # type: ignore[union-attr]
    assert "RowsChange" in kinds[3:]


# --- fidelity ------------------------------------------------------------------------------

_FIDELITY_DDL = """
CREATE TABLE br_fid.{name} (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT,
  biu BIGINT UNSIGNED,
  d1 DECIMAL(65,30), d2 DECIMAL(10,2), d3 DECIMAL(5,0), d4 DECIMAL(20,10), d5 DECIMAL(3,3),
  f FLOAT, dbl DOUBLE,
  b1 BIT(1), b10 BIT(10), b64 BIT(64),
  e ENUM('a','b','c'), st SET('x','y','z'),
  dt DATE, tm TIME(6), tm0 TIME, tm1 TIME(1), tm3 TIME(3),
  dtt DATETIME(6), dtt0 DATETIME, dtt2 DATETIME(2),
  ts TIMESTAMP(6) NULL DEFAULT NULL, ts0 TIMESTAMP NULL DEFAULT NULL,
  ts3 TIMESTAMP(3) NULL DEFAULT NULL, yr YEAR,
  c CHAR(10), vc VARCHAR(300), tx TEXT, lt VARCHAR(20) CHARACTER SET latin1,
  bn BINARY(4), vb VARBINARY(20), bl BLOB, js JSON,
  gv INT AS (si + 1) VIRTUAL, gs INT AS (si * 2) STORED
) DEFAULT CHARSET = utf8mb4
"""

_ALL_BYTES = bytes(range(256))

_FIDELITY_ROWS: list[tuple[Any, ...]] = [
    (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
     "-" + "9" * 35 + "." + "9" * 30, "-12345678.90", "-99999", "-0.0000000001", "-0.999",
     -3.40282e38, -1.7976931348623157e308,
     0, 0, 0, "a", "",
     "0000-00-00", "-838:59:59.000000", "-00:00:01", "-00:00:00.5", "-12:34:56.789",
     "0000-00-00 00:00:00.000000", "0000-00-00 00:00:00", "0000-00-00 00:00:00.00",
     "0000-00-00 00:00:00", "0000-00-00 00:00:00", "1970-01-01 00:00:01.000", 0,
     "", "", "", "", b"", b"", b"", "[]"),
    (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
     9223372036854775807, 18446744073709551615,
     "9" * 35 + "." + "9" * 30, "12345678.90", "99999", "1234567890.0123456789", "0.999",
     3.40282e38, 1.7976931348623157e308,
     1, 1023, 0xFFFFFFFFFFFFFFFF, "c", "x,y,z",
     "9999-12-31", "838:59:59.000000", "838:59:59", "23:59:59.9", "838:59:59.999",
     "9999-12-31 23:59:59.999999", "9999-12-31 23:59:59", "2024-02-29 12:00:00.01",
     "2038-01-19 03:14:07.999999", "2038-01-19 03:14:07", "2001-09-09 01:46:40.123", 2155,
     "it's \\ \"q\"", "😀🎉 ü € 'x' \\ \0 \x1a end", "line1\nline2\r\t\0tail",
     "café \xff", b"\x00'\\\xff", b"\x00\x27\x5c\x80\xff", _ALL_BYTES,
     '{"a": [1, 2.5, "x\\"y"], "b": null, "c": "😀"}'),
    (3, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1,
     "0.000000000000000000000000000001", "-0.01", "0", "0.0000000001", "-0.001",
     1.1754944e-38, 2.2250738585072014e-308,
     1, 512, 0x8000000000000001, "b", "y",
     "2024-00-15", "100:00:00.123456", "-100:00:00", "-01:02:03.4", "00:00:00.001",
     "2024-02-00 00:00:00.000001", "1000-01-01 00:00:00", "0001-01-01 00:00:00.99",
     "1970-01-01 00:00:01.000001", "2024-06-30 23:59:59", "2024-06-30 23:59:59.5", 1901,
     "a", "x" * 300, "t" * 5000, "\xe0\xe9", b"ab", b"", b"\x00", '"str"'),
    (4, *([None] * 42)),
    (5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "0", "0", "0", "0", "0", 0.1, 0.1, 0, 0, 0, "a", "x",
     "2024-01-01", "00:00:00", "-00:00:00.000001", "-00:00:00.1", "-00:00:00.999",
     "2024-01-01 00:00:00", "2024-01-01 00:00:00", "2024-01-01 00:00:00",
     "2024-01-01 00:00:00.000001", "2024-01-01 00:00:00", "2024-01-01 00:00:00", 2000,
     "  sp  ", "trailing  ", " ", " ", b" ", b"\x00\x00", b"\x00", "{}"),
]


def _columns(server: MariaDBServer, schema: str, table: str) -> list[tuple[str, str, bool]]:
    rows = server.query(
        "SELECT COLUMN_NAME, DATA_TYPE, EXTRA FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (schema, table))
    return [(str(n), str(t), "GENERATED" in str(x).upper()) for n, t, x in rows]


def _unsigned(server: MariaDBServer, schema: str, table: str) -> list[bool]:
    rows = server.query(
        "SELECT COLUMN_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (schema, table))
    return ["unsigned" in str(t).lower() for (t,) in rows]


def _compare_expr(name: str, data_type: str) -> str:
    q = f"`{name}`"
    if data_type == "float":
        return f"CONCAT({q} + 0e0)"
    if data_type in ("bit", "enum", "set"):
        return f"CONCAT({q} + 0, '/', HEX({q}))"
    if data_type in ("char", "varchar", "text", "blob", "binary", "varbinary", "longtext",
                     "json", "mediumtext", "tinytext"):
        return f"HEX({q})"
    return f"CAST({q} AS CHAR)"


def _snapshot(server: MariaDBServer, schema: str, table: str,
              cols: list[tuple[str, str, bool]]) -> list[tuple[Any, ...]]:
    exprs = ", ".join(_compare_expr(n, t) for n, t, _ in cols)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT {exprs} FROM `{schema}`.`{table}` ORDER BY id")
        return [tuple(r) for r in cur.fetchall()]


def _apply(target: MariaDBServer, schema: str, table: str, cols: list[tuple[str, str, bool]],
           rows: list[tuple[str, ...]], verb: str = "INSERT") -> None:
    keep = [i for i, (_, _, gen) in enumerate(cols) if not gen]
    names = ", ".join(f"`{cols[i][0]}`" for i in keep)
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(APPLY_SESSION_SQL)
        for row in rows:
            assert len(row) == len(cols)
            values = ", ".join(row[i] for i in keep)
            cur.execute(f"{verb} INTO `{schema}`.`{table}` ({names}) VALUES ({values})")
            assert not cur.execute("SHOW WARNINGS"), (row, cur.fetchall())


def _assert_same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]],
                 cols: list[tuple[str, str, bool]]) -> None:
    diffs = [(w[0], cols[i][0], g[i], w[i]) for g, w in zip(got, want, strict=True)
             for i in range(len(cols)) if g[i] != w[i]]
    assert not diffs, diffs  # (id, column, target, source)


def test_fidelity_every_type(source1: MariaDBServer, target: MariaDBServer) -> None:
    check_fidelity(source1, target, "br_fid")


def check_fidelity(source1: MariaDBServer, target: MariaDBServer, schema: str) -> None:
    """Every type inserted and updated on `source1`, read from its binlog, applied to
    `target` and compared value by value."""
    for server in (source1, target):
        server.execute(f"DROP DATABASE IF EXISTS {schema}; CREATE DATABASE {schema}")
        server.execute(_FIDELITY_DDL.format(name="t").replace("br_fid", schema))
    cols = _columns(source1, schema, "t")
    names = ", ".join(f"`{n}`" for n, _, gen in cols if not gen)
    start = master_pos(source1)
    with source1.connect() as conn, conn.cursor() as cur:
        cur.execute("SET sql_mode = '', time_zone = '+00:00'")
        placeholders = ", ".join(["%s"] * len(_FIDELITY_ROWS[0]))
        for row in _FIDELITY_ROWS:
            cur.execute(f"INSERT INTO {schema}.t ({names}) VALUES ({placeholders})", row)
        assert not cur.execute("SHOW WARNINGS"), cur.fetchall()
    before = _snapshot(source1, schema, "t", cols)
    with source1.connect() as conn, conn.cursor() as cur:
        cur.execute("SET sql_mode = '', time_zone = '+00:00'")
        cur.execute(f"UPDATE {schema}.t SET vc = CONCAT(IFNULL(vc, ''), '✓'), "
                    "tm = '-01:02:03.500001', d1 = -d1, f = f * 2, st = 'x,z', "
                    "ts = '2030-05-05 05:05:05.5', bl = CONCAT(IFNULL(bl, ''), X'00FF27')")
    after = _snapshot(source1, schema, "t", cols)
    assert before != after

    unsigned = _unsigned(source1, schema, "t")
    changes = read_all(source1, Start.at(start), unsigned_of=lambda s, t: unsigned)
    rows = [c for c in changes if isinstance(c, RowsChange)]
    inserts = [r for c in rows if c.kind == "insert" for r in c.rows]
    updates = [u for c in rows if c.kind == "update" for u in c.updates]
    assert rows[0].column_count == len(cols)
    assert len(inserts) == len(_FIDELITY_ROWS) and len(updates) == len(_FIDELITY_ROWS)
    assert [b for b, _ in updates] == inserts  # before images are the inserted rows

    _apply(target, schema, "t", cols, inserts)
    _assert_same(_snapshot(target, schema, "t", cols), before, cols)
    _apply(target, schema, "t", cols, [a for _, a in updates], verb="REPLACE")
    _assert_same(_snapshot(target, schema, "t", cols), after, cols)

    # Spot checks of the literal text.
    row2 = dict(zip([n for n, _, _ in cols], inserts[1], strict=True))
    assert row2["biu"] == "18446744073709551615" and row2["d1"] == "9" * 35 + "." + "9" * 30
    assert row2["yr"] == "2155" and row2["e"] == "3" and row2["st"] == "7"
    assert row2["tm"] == "'838:59:59.000000'" and row2["ts"] == "'2038-01-19 03:14:07.999999'"
    assert row2["f"] == "3.40282e+38"
    row1 = dict(zip([n for n, _, _ in cols], inserts[0], strict=True))
    assert row1["dt"] == "'0000-00-00'" and row1["yr"] == "0" and row1["ts0"] == (
        "'0000-00-00 00:00:00'")
    assert row1["tm1"] == "'-00:00:00.5'"


# --- private server: metadata FULL, start_time, purge, a frozen server ---------------------


@pytest.fixture(scope="module")
def private() -> Iterator[MariaDBServer]:
    server = MariaDBServer(151, name="br-private",
                           extra_args=["--binlog-row-metadata=FULL"]).start()
    try:
        yield server
    finally:
        server.stop()


def test_unsigned_from_full_row_metadata(private: MariaDBServer) -> None:
    private.execute("CREATE DATABASE IF NOT EXISTS br_meta; "
                    "CREATE TABLE br_meta.t (a INT UNSIGNED, b BIGINT UNSIGNED, c TINYINT)")
    start = master_pos(private)
    private.execute("INSERT INTO br_meta.t VALUES (4294967295, 18446744073709551615, -1)")
    changes = read_all(private, Start.at(start))  # no unsigned_of: the metadata says
    [rows] = [c for c in changes if isinstance(c, RowsChange)]
    assert rows.rows == [("4294967295", "18446744073709551615", "-1")]


def _next_second() -> None:
    """Sleep into the next wall-clock second: binlog timestamps are whole seconds."""
    now = time.time()
    time.sleep(int(now) + 1.02 - now)


def test_start_time(private: MariaDBServer) -> None:
    private.execute("CREATE DATABASE IF NOT EXISTS br_time; "
                    "CREATE TABLE br_time.t (id INT PRIMARY KEY)")
    first = master_pos(private)
    private.execute("INSERT INTO br_time.t VALUES (1)")
    private.execute("FLUSH BINARY LOGS")
    _next_second()
    private.execute("INSERT INTO br_time.t VALUES (2)")
    _next_second()
    private.execute("INSERT INTO br_time.t VALUES (3)")
    private.execute("INSERT INTO br_time.t VALUES (4)")
    cfg = cfg_of(private)
    # The events' own times, rather than the clock's around them (a loaded machine may
    # let a second pass between a statement and its event).
    stamps = {ch.rows[0][0]: ch.timestamp for ch in read_all(private, Start.at(first))
              if isinstance(ch, RowsChange) and ch.schema == "br_time"}
    assert stamps["1"] < stamps["2"] < stamps["3"] <= stamps["4"]
    ts = stamps["3"]

    pos = find_start_by_time(cfg, ts, server_id=next(_reader_ids))
    changes = read_all(private, Start.at(pos))
    assert summary(changes) == [("t", "insert", [("3",)]), ("commit",),
                                ("t", "insert", [("4",)]), ("commit",)]
    # The GTID set at that point includes transaction 2, not 3.
    [(gtid_after_2,)] = private.query("SELECT BINLOG_GTID_POS(%s, %s)",
                                      (pos.binlog_name, pos.binlog_pos))
    assert pos.gtid == gtid_after_2

    # The reader resolves start_time itself; an older time starts earlier.
    changes = read_all(private, Start(start_time=stamps["2"]))
    assert [c.rows for c in changes if isinstance(c, RowsChange)][:1] == [[("2",)]]

    with pytest.raises(DMError) as exc:
        find_start_by_time(cfg, ts + 3600, server_id=next(_reader_ids))
    assert exc.value.code == 22103


def test_purged_binlog(private: MariaDBServer) -> None:
    private.execute("CREATE DATABASE IF NOT EXISTS br_purge; "
                    "CREATE TABLE br_purge.t (id INT PRIMARY KEY)")
    old = master_pos(private)
    private.execute("INSERT INTO br_purge.t VALUES (1)")
    private.execute("FLUSH BINARY LOGS")
    private.execute("INSERT INTO br_purge.t VALUES (2)")
    [(newest, *_)] = private.query("SHOW MASTER STATUS")
    # MariaDB keeps a file (warning only) until its binlog checkpoint has passed, i.e. until
    # InnoDB made its transactions durable: retry for a while.
    deadline = time.monotonic() + 15
    while True:
        private.execute(f"PURGE BINARY LOGS TO '{newest}'")
        if [r[0] for r in private.query("SHOW BINARY LOGS")] == [newest]:
            break
        assert time.monotonic() < deadline, private.query("SHOW BINARY LOGS")
        time.sleep(0.2)

    t0 = time.monotonic()
    with pytest.raises(DMError) as exc:
        read_all(private, Start.at(old))
    assert exc.value.code == 22101 and old.binlog_name in str(exc.value)
    with pytest.raises(DMError) as exc:
        read_all(private, Start(gtid=old.gtid), gtid_mode=True)
    assert exc.value.code == 22101
    assert time.monotonic() - t0 < 10  # no retrying


@pytest.fixture
def compressing(private: MariaDBServer) -> Iterator[MariaDBServer]:
    """`private` with MariaDB's log_bin_compress on, for every statement of 10+ bytes."""
    private.execute("SET GLOBAL log_bin_compress = ON, GLOBAL log_bin_compress_min_len = 10")
    try:
        yield private
    finally:
        private.execute("SET GLOBAL log_bin_compress = OFF, "
                        "GLOBAL log_bin_compress_min_len = DEFAULT")


def test_compressed_binlog_events(compressing: MariaDBServer, target: MariaDBServer) -> None:
    start = master_pos(compressing)
    check_fidelity(compressing, target, "br_zip")
    ddl = ("ALTER TABLE br_zip.t ADD COLUMN zz VARCHAR(20) DEFAULT 'zipped ✓' "
           "COMMENT 'long enough to be compressed'")
    compressing.execute(ddl)
    compressing.execute("DELETE FROM br_zip.t WHERE id = 1")
    events = {str(r[2]) for r in compressing.query(
        f"SHOW BINLOG EVENTS IN '{start.binlog_name}' FROM {start.binlog_pos}")}
    assert {"Query_compressed", "Write_rows_compressed_v1", "Update_rows_compressed_v1",
            "Delete_rows_compressed_v1"} <= events, events

    changes = read_all(compressing, Start.at(start))
    [alter] = [c for c in changes if isinstance(c, QueryChange) and "zipped" in c.sql]
    assert alter.sql == ddl
    [delete] = [c for c in changes if isinstance(c, RowsChange) and c.kind == "delete"]
    assert [r[0] for r in delete.rows] == ["1"] and len(delete.rows[0]) == len(
        _columns(compressing, "br_zip", "t"))
    assert isinstance(changes[-1], Commit) and changes[-1].pos == master_pos(compressing)


def test_frozen_server_raises_binlog_read(private: MariaDBServer) -> None:
    start = master_pos(private)
    reader = BinlogReader(cfg_of(private), next(_reader_ids), Start.at(start), blocking=True,
                          heartbeat=0.2, read_timeout=1.5)
    errors: list[BaseException] = []
    stopped = threading.Event()

    def consume() -> None:
        try:
            for ch in reader:
                if isinstance(ch, Heartbeat) and not stopped.is_set():
                    assert private.pid is not None
                    os.kill(private.pid, signal.SIGSTOP)  # a hung server: no bytes at all
                    stopped.set()
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    th = threading.Thread(target=consume, daemon=True)
    t0 = time.monotonic()
    th.start()
    try:
        th.join(20)
    finally:
        if private.pid is not None:
            os.kill(private.pid, signal.SIGCONT)
        reader.close()
    assert stopped.is_set() and not th.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DMError)
    assert errors[0].code == 22102
    assert time.monotonic() - t0 < 15


# --- the lean framing against pymysqlreplication, the compiled decoder against the loop ----


def test_table_map_parser_matches_pymysqlreplication(private: MariaDBServer) -> None:
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import TableMapEvent

    from mysqlkit.binlog.events import parse_table_map
    from mysqlkit.binlog.rowcodec import TableMapInfo

    private.execute("DROP DATABASE IF EXISTS br_tm; CREATE DATABASE br_tm")
    private.execute(_FIDELITY_DDL.format(name="t").replace("br_fid", "br_tm"))
    start = master_pos(private)
    private.execute("INSERT INTO br_tm.t (id) VALUES (1)")
    stream = BinLogStreamReader(
        connection_settings=private.conn_kwargs(), server_id=next(_reader_ids),
        blocking=False, resume_stream=True, log_file=start.binlog_name,
        log_pos=start.binlog_pos, only_events=[TableMapEvent], enable_logging=False)
    try:
        [ev] = [e for e in stream if e.schema == "br_tm"]
        theirs = TableMapInfo.from_table(ev.get_table())
        pkt = ev.packet.packet
        body = pkt._data[20:20 + ev.event_size - 4]  # after the OK byte and header; no CRC
        table_id, ours = parse_table_map(bytes(body), 0, len(body))
    finally:
        stream.close()
    assert table_id == ev.table_id
    assert ours == theirs
    assert any(ours.unsigned)  # binlog_row_metadata=FULL: the flags are in the binlog


def test_compiled_row_decoder_matches_the_loop(source1: MariaDBServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mysqlkit.binlog import rowcodec

    source1.execute("DROP DATABASE IF EXISTS br_cmp; CREATE DATABASE br_cmp")
    source1.execute(_FIDELITY_DDL.format(name="t").replace("br_fid", "br_cmp"))
    cols = _columns(source1, "br_cmp", "t")
    names = ", ".join(f"`{n}`" for n, _, gen in cols if not gen)
    start = master_pos(source1)
    with source1.connect() as conn, conn.cursor() as cur:
        cur.execute("SET sql_mode = '', time_zone = '+00:00'")
        placeholders = ", ".join(["%s"] * len(_FIDELITY_ROWS[0]))
        cur.executemany(f"INSERT INTO br_cmp.t ({names}) VALUES ({placeholders})",
                        _FIDELITY_ROWS)
        cur.execute("UPDATE br_cmp.t SET si = si + 1 WHERE si < 100")
    unsigned = _unsigned(source1, "br_cmp", "t")
    kw: dict[str, Any] = {"unsigned_of": lambda s, t: unsigned}
    compiled = read_all(source1, Start.at(start), **kw)
    monkeypatch.setattr(rowcodec, "_compile_image", lambda table, u, decs, generic: generic)
    looped = read_all(source1, Start.at(start), **kw)
    assert summary(compiled) == summary(looped)
    assert sum(len(c.rows) + len(c.updates) for c in compiled if isinstance(c, RowsChange)) \
        >= len(_FIDELITY_ROWS) + 3


def test_compiled_decoder_ignores_unused_null_bits() -> None:
    """The server sets the NULL bitmap's unused high bits: rows without a NULL must still
    take the compiled path, rows with one the loop."""
    from mysqlkit.binlog import rowcodec

    info = rowcodec.TableMapInfo("s", "t", (rowcodec.T_LONG, rowcodec.T_VARCHAR,
                                            rowcodec.T_TINY), ((), (20,), ()),
                                 (False, False, False))
    decs = tuple(rowcodec.column_decoder(t, m, False) for t, m in zip(info.types, info.meta,
                                                                       strict=True))
    fallbacks: list[int] = []

    def generic(b: bytes, p: int) -> tuple[tuple[str, ...], int]:
        fallbacks.append(p)
        return rowcodec.RowDecoder(info, [False] * 3)._image(b, p)

    image = rowcodec._compile_image(info, [False] * 3, decs, generic)
    row = struct.pack("<i", -5) + b"\x02hi" + b"\xff"
    assert image(b"\xf8" + row, 0) == (("-5", "_binary'hi'", "-1"), 1 + len(row))
    assert not fallbacks
    assert image(b"\xfa" + struct.pack("<i", 7) + b"\x01", 0) == (("7", "NULL", "1"), 6)
    assert fallbacks == [0]
