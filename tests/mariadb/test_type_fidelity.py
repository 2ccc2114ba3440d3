"""Every MySQL/MariaDB type survives dump_chunk + load_statements value for value, directly
and through dump files; chunking by composite, VARCHAR, ENUM and binary keys covers every
row exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncmy
import pytest

from mysqlkit.full.chunks import plan_chunks
from mysqlkit.full.dump import dump_chunk, dump_chunk_lines, open_consistent_snapshot
from mysqlkit.full.dumpfiles import (
    iter_statements,
    list_dump,
    read_create_table,
    write_chunk_file,
    write_schema_create,
    write_table_schema,
)
from mysqlkit.full.load import (
    Lines,
    connect_for_load,
    create_target_table,
    load_data,
    load_statements,
    prepare_load_session,
)
from mysqlkit.schema.tableinfo import TableInfo, table_info
from mysqlkit.upstream import ConnConfig, open_conn
from testbed.mariadb import MariaDBServer

pytestmark = pytest.mark.mariadb

ALL_TYPES = """
CREATE TABLE alltypes (
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED,
  dec65 DECIMAL(65,30), dec0 DECIMAL(10,0) UNSIGNED,
  f FLOAT, d DOUBLE,
  b1 BIT(1), b64 BIT(64),
  e ENUM('a','b''q','c,d','ü',' sp'), s SET('x','y','z','ü'),
  dd DATE, t6 TIME(6), dt6 DATETIME(6), ts6 TIMESTAMP(6) NULL DEFAULT NULL, y YEAR,
  ch CHAR(20), vc VARCHAR(300), tx TEXT, mt MEDIUMTEXT,
  lat VARCHAR(50) CHARACTER SET latin1, gbk VARCHAR(20) CHARACTER SET gbk,
  bin16 BINARY(16), vb VARBINARY(300), bl BLOB, lb LONGBLOB,
  j JSON,
  nn_s VARCHAR(10) NOT NULL DEFAULT '', nn_b VARBINARY(10) NOT NULL DEFAULT '',
  nn_f FLOAT NOT NULL DEFAULT 0, nn_bit BIT(8) NOT NULL DEFAULT b'0',
  gv BIGINT AS (i * 2) VIRTUAL,
  gs VARCHAR(310) AS (CONCAT(vc, '!')) STORED
) DEFAULT CHARSET=utf8mb4
"""

ALL_BYTES = bytes(range(256))
TORTURE = ("it's \"quoted\" \\ back\\slash \x00 NUL \n newline \r\n crlf \t tab \x1a ^Z "
           "😀🎉 é ü 中文")

COLUMNS = ("id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dec65, dec0, f, d, b1, b64, e, s, "
           "dd, t6, dt6, ts6, y, ch, vc, tx, mt, lat, gbk, bin16, vb, bl, lb, j, nn_s, nn_b, "
           "nn_f, nn_bit")

ROWS: list[tuple[Any, ...]] = [
    # minimums
    (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
     "-99999999999999999999999999999999999.999999999999999999999999999999", 0,
     -3.4028234663852886e38, -1.7976931348623157e308, 0, 0, "a", "",
     "1000-01-01", "-838:59:59.000000", "1000-01-01 00:00:00.000000",
     "1970-01-01 00:00:01.000000", 1901, "", "", "", "", "", "", bytes(16), b"", b"", b"",
     "[]", "", b"", 0.0, 0),
    # maximums
    (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
     9223372036854775807, 18446744073709551615,
     "99999999999999999999999999999999999.999999999999999999999999999999", 9999999999,
     3.4028234663852886e38, 1.7976931348623157e308, 1, 0xFFFFFFFFFFFFFFFF, "ü", "x,y,z,ü",
     "9999-12-31", "838:59:59.000000", "9999-12-31 23:59:59.999999",
     "2038-01-19 03:14:07.999999", 2155, "x" * 20, "ü" * 300, "t" * 65535,
     "😀" * 10000, "ÿ" * 50, "中" * 20, b"\xff" * 16, b"\xfe" * 300, ALL_BYTES * 255,
     ALL_BYTES * 4096, json.dumps({"k": ["v" * 1000]}), "z" * 10, b"\xff" * 10,
     -1.5, 255),
    # zero dates, tiny and fractional values
    (3, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, "0.000000000000000000000000000001", 1,
     1.401298464324817e-45, 5e-324, 0, 1 << 63, "", "x,z",
     "0000-00-00", "00:00:00.000000", "0000-00-00 00:00:00.000000",
     "0000-00-00 00:00:00.000000", 0, "a", "b", "c", "d", "e", "f", b"\x00" * 16,
     b"\x00", b"\x00", b"\x00", "0", "0", b"0", 1.1754943508222875e-38, 1),
    # strings and bytes with everything awkward in them
    (4, -1, 128, -1, 32768, -1, 8388608, -1, 2147483648, -1, 9223372036854775808,
     "-0.000000000000000000000000000001", 5, 0.1, 0.1, 1, 1, "b'q", "ü,x",
     "2024-02-29", "-00:00:00.000001", "2024-02-29 12:34:56.123456",
     "2024-02-29 12:34:56.654321", 2024, "it's \\ \"q\"", TORTURE, TORTURE * 3,
     TORTURE * 100, "café ÿ ½", "中文 gbk", ALL_BYTES[:16], ALL_BYTES, ALL_BYTES * 3,
     ALL_BYTES * 1000,
     json.dumps({"nested": {"a": [1, 2.5, None, True, "ü😀", {"deep": "\"\\'\n"}]},
                 "é": "ünïcödé"}, ensure_ascii=False), "'\\\x00\n", b"'\\\x00\n\x1a",
     0.1, 0x80),
    # NULL in every nullable column
    (5, *([None] * 34), "", b"", 0.0, 0),
    # more odd but valid values
    (6, 7, 7, 7, 7, 7, 7, 7, 7, 1 << 53, (1 << 64) - 2, "123.456", 0, 16777217.0,
     1.2345678901234567, 0, 0x0123456789ABCDEF, "c,d", "y", "2000-01-01",
     "100:00:00.500000", "2000-01-01 00:00:00.000001", "2000-01-01 00:00:00.000001", 2000,
     " lead and trail ", "trailing spaces   ", "  ", "\\", "\\'", "\\", b"\x00\x01",
     b"\\'\"", b"\x00" * 5, b"\n",
     '{"a": {"b": {"c": {"d": [[[[1]]]]}}}}', "\\", b"\\", 3.4028234663852886e38, 0xFF),
    (7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "1", 1, 1.0, 1.0, 1, 1, " sp", "ü", "2001-02-03",
     "12:00:00.000000", "2001-02-03 04:05:06.000000", "2001-02-03 04:05:06.000000", 1999,
     "ch", "vc", "tx", "mt", "lat", "gbk", b"1" * 16, b"vb", b"bl", b"lb", '"s"', "s",
     b"b", 2.0, 2),
]


def cfg_of(server: MariaDBServer) -> ConnConfig:
    return ConnConfig(**server.conn_kwargs())


def compare_exprs(info: TableInfo) -> str:
    """Exact per-column text: the value's bytes in hex; FLOAT widened to DOUBLE (whose
    text is exact) first; NULL stays NULL."""
    exprs = []
    for c in info.columns:
        col = f"`{c.name}`"
        if c.data_type == "float":
            col = f"({col}+0e0)"
        exprs.append(f"HEX(CAST({col} AS BINARY))")
    return ", ".join(exprs)


def table_rows(server: MariaDBServer, info: TableInfo, schema: str, table: str,
               order: str) -> list[tuple[Any, ...]]:
    # UTC like our sessions, so TIMESTAMPs are compared as stored.
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT {compare_exprs(info)} FROM `{schema}`.`{table}` ORDER BY {order}")
        return [tuple(r) for r in cur.fetchall()]


async def dump_table(conn: asyncmy.Connection, info: TableInfo, target: tuple[str, str],
                     rows_per_chunk: int) -> list[list[bytes]]:
    return [[s async for s in dump_chunk(conn, info, c, target, statement_rows=2)]
            for c in await plan_chunks(conn, info, rows_per_chunk)]


@pytest.fixture(scope="module")
def alltypes(source1: MariaDBServer) -> str:
    source1.execute("DROP DATABASE IF EXISTS tf_src")
    source1.execute("CREATE DATABASE tf_src")
    source1.execute(ALL_TYPES, database="tf_src")
    placeholders = ", ".join(["%s"] * len(ROWS[0]))
    with source1.connect("tf_src") as conn, conn.cursor() as cur:
        # Non-strict and without NO_ZERO_DATE: zero dates and the '' ENUM value (index 0)
        # are what such a session stores; the dump must carry them unchanged.
        cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
        cur.executemany(f"INSERT INTO alltypes ({COLUMNS}) VALUES ({placeholders})", ROWS)
    return "tf_src"


async def test_source_holds_the_edge_values(source1: MariaDBServer, alltypes: str) -> None:
    """Guards the test itself: the awkward values really are in the source."""
    got = dict(source1.query(
        "SELECT id, CONCAT_WS('|', e+0, biu, HEX(b64), dd, UNIX_TIMESTAMP(ts6), t6, y, "
        "LENGTH(lb), HEX(nn_b)) "
        "FROM tf_src.alltypes"))
    assert got[1] == "1|0|0|1000-01-01|1.000000|-838:59:59.000000|1901|0|"
    assert got[3] == "0|1|8000000000000000|0000-00-00|0.000000|00:00:00.000000|0000|1|30"
    assert got[2].startswith("4|18446744073709551615|FFFFFFFFFFFFFFFF|9999-12-31|")
    assert source1.query("SELECT COUNT(*) FROM tf_src.alltypes WHERE id = 5 AND ti IS NULL "
                         "AND j IS NULL AND lb IS NULL AND gs IS NULL") == [(1,)]


async def test_every_type_round_trips_through_dump_and_load(
        source1: MariaDBServer, target: MariaDBServer, alltypes: str) -> None:
    target.execute("DROP DATABASE IF EXISTS tf_direct")
    async with await open_consistent_snapshot(cfg_of(source1), 1, "snapshot") as session:
        info = await table_info(session.conns[0], alltypes, "alltypes")
        chunks = await dump_table(session.conns[0], info, ("tf_direct", "alltypes"), 2)
    assert len(chunks) == 4  # ids 1..7 in ranges of ~2
    joined = b"".join(s for c in chunks for s in c)
    assert b"`gv`" not in joined and b"`gs`" not in joined  # generated: not inserted
    async with open_conn(cfg_of(target)) as conn:
        assert await create_target_table(conn, info.create_sql, "tf_direct", "alltypes")
        loaded = sum([await load_statements(conn, c, "error", None) for c in chunks])
        # Warnings would mean a value was adjusted on the way in: statement by statement
        # into a copy, the only one must be the invalid ENUM value '' of row 3 (stored
        # by the source as index 0, loaded the same way).
        await create_target_table(conn, info.create_sql, "tf_direct", "warn")
        await prepare_load_session(conn)
        warnings = []
        async with conn.cursor() as cur:
            for stmt in (s for c in chunks for s in c):
                await conn.query(stmt.replace(b"`alltypes`", b"`warn`", 1))
                await cur.execute("SHOW WARNINGS")
                warnings += [tuple(w) for w in await cur.fetchall()]
    assert warnings == [("Warning", 1265, "Data truncated for column 'e' at row 1")]
    assert loaded == len(ROWS)
    want = table_rows(source1, info, alltypes, "alltypes", "id")
    got = table_rows(target, info, "tf_direct", "alltypes", "id")
    assert len(got) == len(want)
    for w, g in zip(want, got, strict=True):
        for col, wv, gv in zip(info.columns, w, g, strict=True):
            assert wv == gv, f"row #{w[0]} (hex) column {col.name}: {wv!r} != {gv!r}"


async def test_every_type_round_trips_through_load_data(
        source1: MariaDBServer, target: MariaDBServer, alltypes: str) -> None:
    """The chunk workers' path: dump_chunk_lines + LOAD DATA LOCAL INFILE from memory."""
    target.execute("DROP DATABASE IF EXISTS tf_infile")
    async with await open_consistent_snapshot(cfg_of(source1), 1, "snapshot") as session:
        info = await table_info(session.conns[0], alltypes, "alltypes")
        chunks = [await dump_chunk_lines(session.conns[0], info, c)
                  for c in await plan_chunks(session.conns[0], info, 2)]
    assert len(chunks) == 4 and sum(n for _, n in chunks) == len(ROWS)
    conn = await connect_for_load(cfg_of(target))
    try:
        await create_target_table(conn, info.create_sql, "tf_infile", "alltypes")
        loaded = 0
        warnings = []
        for data, n in chunks:
            loaded += await load_data(conn, Lines.of(data, n), info, ("tf_infile", "alltypes"),
                                      "error")
            async with conn.cursor() as cur:
                await cur.execute("SHOW WARNINGS")
                warnings += [tuple(w) for w in await cur.fetchall()]
    finally:
        conn.close()
    # As with INSERT, the only adjusted value is the invalid ENUM value '' of row 3.
    assert warnings == [("Warning", 1265, "Data truncated for column 'e' at row 1")]
    assert loaded == len(ROWS)
    want = table_rows(source1, info, alltypes, "alltypes", "id")
    got = table_rows(target, info, "tf_infile", "alltypes", "id")
    assert len(got) == len(want)
    for w, g in zip(want, got, strict=True):
        for col, wv, gv in zip(info.columns, w, g, strict=True):
            assert wv == gv, f"row #{w[0]} (hex) column {col.name}: {wv!r} != {gv!r}"


async def test_every_type_round_trips_through_dump_files(
        source1: MariaDBServer, target: MariaDBServer, alltypes: str, tmp_path: Path) -> None:
    target.execute("DROP DATABASE IF EXISTS tf_files")
    async with await open_consistent_snapshot(cfg_of(source1), 1, "flush") as session:
        conn = session.conns[0]
        info = await table_info(conn, alltypes, "alltypes")
        write_schema_create(tmp_path, alltypes)
        write_table_schema(tmp_path, alltypes, "alltypes", info.create_sql)
        for c in await plan_chunks(conn, info, 3):
            await write_chunk_file(tmp_path, alltypes, "alltypes", c.index,
                                   dump_chunk(conn, info, c, (alltypes, "alltypes"),
                                              statement_rows=2))
    [table] = list_dump(tmp_path).tables
    assert len(table.data_files) == 3
    async with open_conn(cfg_of(target)) as tconn:
        await create_target_table(tconn, read_create_table(table.schema_file), "tf_files",
                                  "alltypes")
        for path in table.data_files:
            await load_statements(tconn, iter_statements(path), "error", None,
                                  target=("tf_files", "alltypes"))
    assert table_rows(source1, info, alltypes, "alltypes", "id") == \
        table_rows(target, info, "tf_files", "alltypes", "id")


# --- chunking by non-integer keys -------------------------------------------------------------

KEY_VALUES = ["", " ", "a", "A ", "b'q", "c\\d", "😀", "é", "z" * 20, "\x00x", "\n", "it's",
              "中文", "ü", "ÿ", "0", "10", "9", "-", "%", "_", "`", '"', "a b", "zz"]


@pytest.fixture(scope="module")
def keyed_tables(source1: MariaDBServer) -> str:
    source1.execute("DROP DATABASE IF EXISTS tf_keys")
    source1.execute("CREATE DATABASE tf_keys")
    source1.execute("CREATE TABLE vc (k VARCHAR(64) NOT NULL PRIMARY KEY, n INT) "
                    "DEFAULT CHARSET=utf8mb4 COLLATE utf8mb4_general_ci", database="tf_keys")
    source1.execute("CREATE TABLE comp (a INT NOT NULL, b VARCHAR(20) COLLATE utf8mb4_bin "
                    "NOT NULL, c DATETIME(3) NOT NULL, e ENUM('z','y','x') NOT NULL, v INT, "
                    "PRIMARY KEY (a, b, c, e))", database="tf_keys")
    source1.execute("CREATE TABLE bin (k VARBINARY(8) NOT NULL, d DECIMAL(8,2) NOT NULL, "
                    "v INT, UNIQUE KEY uk (k, d))", database="tf_keys")
    rows = [(f"{v}{i}", i) for i, v in enumerate(KEY_VALUES * 12)]
    # INSERT IGNORE: some values are equal under the case- and accent-insensitive collation.
    source1.executemany("INSERT IGNORE INTO tf_keys.vc VALUES (%s, %s)", rows)
    source1.executemany(
        "INSERT INTO tf_keys.comp VALUES (%s, %s, %s, %s, %s)",
        [(i % 4, KEY_VALUES[i % len(KEY_VALUES)], f"2024-01-0{i % 3 + 1} 00:00:00.{i:03d}",
          "zyx"[i % 3], i) for i in range(300)])
    source1.executemany("INSERT INTO tf_keys.bin VALUES (%s, %s, %s)",
                        [(bytes([i % 256, (i * 7) % 256]), i % 3 - 1.5, i) for i in range(300)])
    return "tf_keys"


@pytest.mark.parametrize(("table", "key", "expect_key"), [
    ("vc", "k", ["k"]),
    ("comp", "a, b, c, e", ["a", "b", "c", "e"]),
    ("bin", "k, d", ["k", "d"]),
])
async def test_non_integer_keys_chunk_every_row_exactly_once(
        source1: MariaDBServer, target: MariaDBServer, keyed_tables: str, table: str,
        key: str, expect_key: list[str]) -> None:
    schema = keyed_tables
    async with await open_consistent_snapshot(cfg_of(source1), 1, "flush") as session:
        conn = session.conns[0]
        info = await table_info(conn, schema, table)
        chunks = await plan_chunks(conn, info, rows_per_chunk=37)
        assert chunks == await plan_chunks(conn, info, rows_per_chunk=37)  # stable
        dumped = [[s async for s in dump_chunk(conn, info, c, ("tf_keys_tgt", table))]
                  for c in chunks]
    assert info.chunk_key == expect_key
    [(total,)] = source1.query(f"SELECT COUNT(*) FROM {schema}.{table}")
    assert len(chunks) == -(-total // 37) and len(chunks) >= 5
    assert all(c.where for c in chunks)
    seen: list[tuple[Any, ...]] = []
    for c in chunks:
        part = source1.query(f"SELECT HEX(CONCAT_WS(0x00, {key})) FROM {schema}.{table} "
                             f"WHERE {c.where}")
        assert len(part) == c.est_rows  # exactly rows_per_chunk, the rest in the last one
        seen += part
    everything = source1.query(f"SELECT HEX(CONCAT_WS(0x00, {key})) FROM {schema}.{table}")
    assert len(seen) == total and sorted(seen) == sorted(everything)

    target.execute("CREATE DATABASE IF NOT EXISTS tf_keys_tgt")
    target.execute(f"DROP TABLE IF EXISTS tf_keys_tgt.{table}")
    async with open_conn(cfg_of(target)) as tconn:
        await create_target_table(tconn, info.create_sql, "tf_keys_tgt", table)
        loaded = sum([await load_statements(tconn, d, "error", None) for d in dumped])
    assert loaded == total
    assert table_rows(source1, info, schema, table, key) == \
        table_rows(target, info, "tf_keys_tgt", table, key)
