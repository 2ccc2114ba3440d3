"""mysqlkit's full-migration data path (table info, chunks, snapshots, dump, load, dump
files) against the private MariaDB servers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncmy
import pytest

from errors import DUMP_ROW_TOO_LARGE, DMError
from mysqlkit.full.chunks import Chunk, plan_chunks
from mysqlkit.full.dump import (
    BinlogPosition,
    SnapshotLock,
    dump_chunk,
    open_consistent_snapshot,
    open_snapshot_reader,
)
from mysqlkit.full.dumpfiles import (
    chunk_file_name,
    iter_statements,
    list_dump,
    parse_metadata,
    read_create_table,
    write_chunk_file,
    write_metadata,
    write_schema_create,
    write_table_schema,
)
from mysqlkit.full.load import (
    Lines,
    connect_for_load,
    create_target_table,
    load_data,
    load_statements,
    local_infile_allowed,
    rename_create_table,
    table_columns,
)
from mysqlkit.schema.tableinfo import table_info
from mysqlkit.upstream import ConnConfig, open_conn
from testbed.mariadb import MariaDBServer

pytestmark = pytest.mark.mariadb


def cfg_of(server: MariaDBServer, **overrides: Any) -> ConnConfig:
    kwargs: dict[str, Any] = dict(server.conn_kwargs())
    kwargs.update(overrides)
    return ConnConfig(**kwargs)


def fresh_schema(server: MariaDBServer, schema: str, *ddl: str) -> None:
    server.execute(f"DROP DATABASE IF EXISTS `{schema}`")
    server.execute(f"CREATE DATABASE `{schema}`")
    for stmt in ddl:
        server.execute(stmt, database=schema)


def make_sbtest(server: MariaDBServer, schema: str, rows: int) -> None:
    """A sysbench-shaped table with `rows` rows, generated server-side (seq engine)."""
    fresh_schema(server, schema,
                 "CREATE TABLE sbtest1 (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                 "k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', "
                 "pad CHAR(60) NOT NULL DEFAULT '', KEY k_1 (k)) ENGINE=InnoDB")
    server.execute(
        f"INSERT INTO sbtest1 SELECT seq, FLOOR(RAND(seq) * {rows}), "
        "CONCAT_WS('-', LPAD(seq, 11, '0'), MD5(seq), 'it''s \\\\ \"q\"'), "
        f"LPAD(seq * 7, 59, '0') FROM seq_1_to_{rows}", database=schema)


def rows_of(server: MariaDBServer, schema: str, table: str, order: str) -> list[tuple[Any, ...]]:
    cols = [r[0] for r in server.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND "
        "TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (schema, table))]
    exprs = ", ".join(f"HEX(CAST(`{c}` AS BINARY))" for c in cols)
    return server.query(f"SELECT {exprs} FROM `{schema}`.`{table}` ORDER BY {order}")


async def dump_all(conn: asyncmy.Connection, schema: str, table: str, target: tuple[str, str],
                   rows_per_chunk: int = 100_000, **kw: Any) -> list[list[bytes]]:
    info = await table_info(conn, schema, table)
    return [[s async for s in dump_chunk(conn, info, c, target, **kw)]
            for c in await plan_chunks(conn, info, rows_per_chunk)]


# --- table info ------------------------------------------------------------------------------


async def test_table_info_reads_columns_keys_and_create(source1: MariaDBServer) -> None:
    fresh_schema(
        source1, "ti_info",
        "CREATE TABLE pk (id BIGINT UNSIGNED NOT NULL, name VARCHAR(10) CHARACTER SET latin1, "
        "g INT AS (id + 1) VIRTUAL, s INT AS (id * 2) STORED, PRIMARY KEY (id))",
        "CREATE TABLE uk (a INT NULL, b INT NOT NULL, c VARCHAR(5) NOT NULL, "
        "UNIQUE KEY ua (a), UNIQUE KEY ubc (b, c))",
        "CREATE TABLE nokey (a INT, b INT NULL, UNIQUE KEY ub (b))")
    async with open_conn(cfg_of(source1)) as conn:
        pk = await table_info(conn, "ti_info", "pk")
        uk = await table_info(conn, "ti_info", "uk")
        nokey = await table_info(conn, "ti_info", "nokey")
    assert pk.create_sql.startswith("CREATE TABLE `pk`")
    assert [c.name for c in pk.columns] == ["id", "name", "g", "s"]
    assert [c.is_generated for c in pk.columns] == [False, False, True, True]
    assert [c.name for c in pk.stored_columns] == ["id", "name"]
    assert pk.columns[0].is_unsigned and pk.columns[0].data_type == "bigint"
    assert pk.columns[1].charset == "latin1" and not pk.columns[1].is_unsigned
    assert pk.chunk_key == ["id"]
    assert uk.chunk_key == ["b", "c"]  # `ua` is unique but nullable
    assert nokey.chunk_key == []


# --- chunks ----------------------------------------------------------------------------------


async def test_integer_chunks_cover_every_row_once_and_are_stable(source1: MariaDBServer) -> None:
    fresh_schema(source1, "ck_int", "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v INT)")
    # Sparse and negative keys: ranges are over the key space, rows must still be covered.
    source1.execute("INSERT INTO t SELECT CAST(seq * seq AS SIGNED) - 5000, seq FROM seq_1_to_700",
                    database="ck_int")
    async with open_conn(cfg_of(source1)) as conn:
        info = await table_info(conn, "ck_int", "t")
        chunks = await plan_chunks(conn, info, rows_per_chunk=100)
        again = await plan_chunks(conn, info, rows_per_chunk=100)
        single = await plan_chunks(conn, info, rows_per_chunk=1000)
    assert chunks == again
    assert len(chunks) == 7 and [c.index for c in chunks] == list(range(7))
    assert chunks[0].where is not None and ">=" not in chunks[0].where
    assert chunks[-1].where is not None and "<" not in chunks[-1].where
    assert single == [Chunk("ck_int", "t", 0, None, 700)]
    seen: list[int] = []
    for c in chunks:
        seen += [r[0] for r in source1.query(f"SELECT id FROM ck_int.t WHERE {c.where}")]
    assert sorted(seen) == sorted(r[0] for r in source1.query("SELECT id FROM ck_int.t"))


async def test_table_without_key_is_one_chunk(source1: MariaDBServer) -> None:
    fresh_schema(source1, "ck_nokey", "CREATE TABLE t (a INT, b TEXT)")
    source1.execute("INSERT INTO t VALUES (1, 'x'), (1, 'x'), (NULL, NULL)", database="ck_nokey")
    async with open_conn(cfg_of(source1)) as conn:
        info = await table_info(conn, "ck_nokey", "t")
        chunks = await plan_chunks(conn, info, rows_per_chunk=1)
        stmts = [s async for s in dump_chunk(conn, info, chunks[0], ("ck_nokey", "t"))]
    assert [(c.index, c.where) for c in chunks] == [(0, None)]
    assert stmts == [b"INSERT INTO `ck_nokey`.`t` (`a`,`b`) VALUES\n"
                     b"(1,'x'),\n(1,'x'),\n(NULL,NULL);\n"]


# --- consistent snapshots --------------------------------------------------------------------

ACCOUNTS = 40
BALANCE = 1000


def gtid_seq(gtid: str, server_id: int) -> int:
    """MariaDB GTID position `domain-server-seq[,...]`: the seq of domain 0."""
    for part in gtid.split(","):
        domain, _server, seq = part.strip().split("-")
        if domain == "0":
            return int(seq)
    raise AssertionError(f"no domain 0 in {gtid!r} (server {server_id})")


class TransferWriter:
    """Moves money between accounts, one transaction per transfer, each also inserting a
    `xfer` row: every committed transaction is one GTID and one xfer row."""

    def __init__(self, cfg: ConnConfig, schema: str) -> None:
        self.cfg = cfg
        self.schema = schema
        self.commits = 0
        self.base_seq = 0
        self.stop = asyncio.Event()
        self.progress = asyncio.Event()

    async def run(self) -> None:
        async with open_conn(self.cfg, database=self.schema) as conn:
            i = 0
            while not self.stop.is_set():
                i += 1
                a, b = i % ACCOUNTS + 1, (i * 7 + 3) % ACCOUNTS + 1
                await conn.query("BEGIN")
                await conn.query(f"UPDATE acct SET bal = bal - {i % 13} WHERE id = {a}")
                await conn.query(f"UPDATE acct SET bal = bal + {i % 13} WHERE id = {b}")
                await conn.query(f"INSERT INTO xfer (amount) VALUES ({i % 13})")
                await conn.query("COMMIT")
                self.commits += 1
                self.progress.set()

    async def wait_for(self, n: int) -> None:
        async with asyncio.timeout(30):
            while self.commits < n:
                self.progress.clear()
                await self.progress.wait()


@contextlib.asynccontextmanager
async def running_writer(server: MariaDBServer, schema: str) -> AsyncIterator[TransferWriter]:
    fresh_schema(server, schema,
                 "CREATE TABLE acct (id INT PRIMARY KEY, bal BIGINT NOT NULL)",
                 "CREATE TABLE xfer (id INT AUTO_INCREMENT PRIMARY KEY, amount INT NOT NULL)")
    server.execute(f"INSERT INTO acct SELECT seq, {BALANCE} FROM seq_1_to_{ACCOUNTS}",
                   database=schema)
    writer = TransferWriter(cfg_of(server), schema)
    # Taken while nothing writes: from here on, GTID seq - base_seq = xfer rows.
    [(gtid,)] = server.query("SELECT @@gtid_binlog_pos")
    writer.base_seq = gtid_seq(gtid, server.server_id)
    task = asyncio.create_task(writer.run())
    try:
        await writer.wait_for(20)
        yield writer
    finally:
        writer.stop.set()
        await task


async def read_view(conn: asyncmy.Connection, schema: str) -> tuple[int, int, str, int]:
    """(sum of balances, xfer rows, binlog_snapshot_file, binlog_snapshot_position)."""
    async with conn.cursor() as cur:
        await cur.execute(f"SELECT SUM(bal) FROM `{schema}`.acct")
        [(total,)] = await cur.fetchall()
        await cur.execute(f"SELECT COUNT(*) FROM `{schema}`.xfer")
        [(xfers,)] = await cur.fetchall()
        await cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
        status = {k.lower(): v for k, v in await cur.fetchall()}
    return (int(total), int(xfers), status["binlog_snapshot_file"],
            int(status["binlog_snapshot_position"]))


@pytest.mark.parametrize("mode", ["flush", "snapshot", "lock", "auto"])
async def test_snapshot_readers_share_one_point_and_its_position(source1: MariaDBServer,
                                                                 mode: str) -> None:
    schema = f"snap_{mode}"
    async with running_writer(source1, schema) as writer:
        session = await open_consistent_snapshot(cfg_of(source1), 4, mode,
                                                 tables=[(schema, "acct"), (schema, "xfer")])
        async with session:
            # Let the writer go on well past the snapshot before reading it.
            await writer.wait_for(writer.commits + 30)
            views = await asyncio.gather(*(read_view(c, schema) for c in session.conns))
    pos = session.position
    assert session.mode == ("flush" if mode == "auto" else mode)
    assert pos.binlog_name.startswith("mysql-bin.") and pos.binlog_pos > 0
    assert len(set(views)) == 1, views  # the same point in all four
    total, xfers, snap_file, snap_pos = views[0]
    assert total == ACCOUNTS * BALANCE
    # Each writer commit is one GTID and one xfer row: the rows seen are exactly those
    # committed before the position (none after it, none missing).
    assert xfers == gtid_seq(pos.gtid, 101) - writer.base_seq
    assert (snap_file, snap_pos) == (pos.binlog_name, pos.binlog_pos)
    [(final,)] = source1.query(f"SELECT COUNT(*) FROM `{schema}`.xfer")
    assert final > xfers  # the writer really ran on after the snapshot


@pytest.mark.parametrize("mode", ["flush", "snapshot"])
async def test_split_snapshot_readers_opened_under_a_held_lock(source1: MariaDBServer,
                                                               mode: str) -> None:
    """The controller holds the lock; readers are opened independently (as other processes
    would); position() without a reader."""
    schema = f"split_{mode}"
    async with running_writer(source1, schema) as writer:
        lock = SnapshotLock(cfg_of(source1), mode)
        async with lock:
            readers = [await open_snapshot_reader(cfg_of(source1)) for _ in range(3)]
            pos = await lock.position()
        assert not lock.held
        try:
            await writer.wait_for(writer.commits + 20)
            views = [await read_view(c, schema) for c in readers]
        finally:
            for c in readers:
                await c.ensure_closed()
    assert len(set(views)) == 1
    assert views[0][1] == gtid_seq(pos.gtid, 101) - writer.base_seq
    assert views[0][2:] == (pos.binlog_name, pos.binlog_pos)


async def test_consistency_none_reads_the_position_before_the_readers(
        source1: MariaDBServer) -> None:
    schema = "snap_none"
    async with running_writer(source1, schema) as writer:
        async with await open_consistent_snapshot(cfg_of(source1), 2, "none") as session:
            views = [await read_view(c, schema) for c in session.conns]
    assert session.mode == "none"
    for total, xfers, _, _ in views:
        assert total == ACCOUNTS * BALANCE
        # Never less than the position: replaying from it can only repeat changes.
        assert xfers >= gtid_seq(session.position.gtid, 101) - writer.base_seq


async def test_auto_falls_back_to_lock_tables_without_reload(source1: MariaDBServer) -> None:
    fresh_schema(source1, "snap_priv", "CREATE TABLE t (id INT PRIMARY KEY)")
    for host in ("%", "localhost"):
        source1.execute("CREATE USER IF NOT EXISTS 'noreload'@%s IDENTIFIED BY 'pw-noreload'",
                        (host,))
        source1.execute("GRANT SELECT, LOCK TABLES, BINLOG MONITOR ON *.* TO "
                        "'noreload'@%s", (host,))
    cfg = cfg_of(source1, user="noreload", password="pw-noreload")
    async with await open_consistent_snapshot(cfg, 2, "auto", [("snap_priv", "t")]) as s:
        assert s.mode == "lock" and s.position.binlog_pos > 0 and len(s.conns) == 2
    with pytest.raises(DMError) as info:
        await open_consistent_snapshot(cfg, 1, "flush")
    assert info.value.code == 32004 and "RELOAD" in info.value.cause
    with pytest.raises(DMError) as info:
        await open_consistent_snapshot(cfg, 1, "bogus")
    assert info.value.code == 20001


async def test_snapshot_reader_connect_error_is_db_driver(source1: MariaDBServer) -> None:
    with pytest.raises(DMError) as info:
        await open_snapshot_reader(cfg_of(source1, password="wrong-pw-123"))
    assert info.value.code == 10001 and "wrong-pw-123" not in str(info.value)


# --- dump + load -----------------------------------------------------------------------------


async def test_sysbench_round_trip_with_statement_limits(source1: MariaDBServer,
                                                         target: MariaDBServer) -> None:
    make_sbtest(source1, "dl_sb", 3000)
    target.execute("DROP DATABASE IF EXISTS dl_sb_tgt")
    async with await open_consistent_snapshot(cfg_of(source1), 1, "flush") as session:
        conn = session.conns[0]
        info = await table_info(conn, "dl_sb", "sbtest1")
        chunks = await plan_chunks(conn, info, rows_per_chunk=1000)
        per_chunk = [[s async for s in dump_chunk(conn, info, c, ("dl_sb_tgt", "sbtest"),
                                                  statement_rows=300,
                                                  max_statement_bytes=40_000)]
                     for c in chunks]
    assert len(chunks) == 3
    for stmts in per_chunk:
        for s in stmts:
            assert s.startswith(b"INSERT INTO `dl_sb_tgt`.`sbtest` (`id`,`k`,`c`,`pad`) "
                                b"VALUES\n(") and s.endswith(b");\n")
            assert len(s) <= 40_000 and s.count(b"),\n(") + 1 <= 300
    async with open_conn(cfg_of(target)) as tconn:
        assert await create_target_table(tconn, info.create_sql, "dl_sb_tgt", "sbtest")
        loaded = [await load_statements(tconn, stmts, "error", None) for stmts in per_chunk]
    assert sum(loaded) == 3000
    assert rows_of(source1, "dl_sb", "sbtest1", "id") == rows_of(target, "dl_sb_tgt", "sbtest",
                                                                "id")


async def test_load_on_duplicate_modes_and_checkpoint_atomicity(target: MariaDBServer) -> None:
    fresh_schema(target, "ld_dup", "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))",
                 "CREATE TABLE ckpt (chunk INT PRIMARY KEY, n INT)")
    target.execute("INSERT INTO t VALUES (2, 'old')", database="ld_dup")
    stmts = [b"INSERT INTO `ld_dup`.`t` (`id`,`v`) VALUES\n(1,'a'),\n(2,'b');\n",
             b"INSERT INTO `ld_dup`.`t` (`id`,`v`) VALUES\n(3,'c');\n"]
    ckpt = "INSERT INTO ld_dup.ckpt VALUES (%s, %s)"
    async with open_conn(cfg_of(target)) as conn:
        with pytest.raises(DMError) as info:
            await load_statements(conn, stmts, "error", (ckpt, (0, 3)))
        err = info.value
        assert err.code == 34101 and err.error_code.cls == "load-unit"
        assert "Duplicate entry '2'" in err.cause and "`ld_dup`.`t`" in err.message
        # Rolled back as a whole: neither row 1 nor the checkpoint.
        assert target.query("SELECT id, v FROM ld_dup.t") == [(2, "old")]
        assert target.query("SELECT * FROM ld_dup.ckpt") == []

        assert await load_statements(conn, stmts, "ignore", (ckpt, (0, 2))) == 2
        assert target.query("SELECT id, v FROM ld_dup.t ORDER BY id") == [
            (1, "a"), (2, "old"), (3, "c")]
        # MariaDB counts 2 for a replaced row that changed, 1 for an identical one.
        assert await load_statements(conn, stmts, "replace", None) == 4
        assert target.query("SELECT id, v FROM ld_dup.t ORDER BY id") == [
            (1, "a"), (2, "b"), (3, "c")]
        assert target.query("SELECT * FROM ld_dup.ckpt") == [(0, 2)]

        # A failing checkpoint undoes the data of its chunk.
        more = [b"INSERT INTO `ld_dup`.`t` (`id`,`v`) VALUES (9,'z');\n"]
        with pytest.raises(DMError) as info:
            await load_statements(conn, more, "error", (ckpt, (0, 1)))
        assert info.value.code == 34101
        assert target.query("SELECT COUNT(*) FROM ld_dup.t WHERE id = 9") == [(0,)]
        with pytest.raises(DMError) as info:
            await load_statements(conn, more, "error", ("INSERT INTO ld_dup.nope VALUES (1)", ()))
        assert info.value.code == 10001 and "doesn't exist" in info.value.cause
        with pytest.raises(DMError) as info:
            await load_statements(conn, [b"DROP TABLE ld_dup.t;\n"], "error", None)
        assert info.value.code == 34009
        assert target.query("SELECT COUNT(*) FROM ld_dup.t") == [(3,)]


async def test_load_data_on_duplicate_modes_and_checkpoint_atomicity(
        target: MariaDBServer) -> None:
    """load_data (LOAD DATA LOCAL from memory) keeps load_statements' contract although
    LOCAL never fails on a duplicate key by itself."""
    fresh_schema(target, "ldi_dup", "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))",
                 "CREATE TABLE ckpt (chunk INT PRIMARY KEY, n INT)")
    target.execute("INSERT INTO t VALUES (2, 'old')", database="ldi_dup")
    data = b"1,'a'\n2,'b'\n3,'c'\n"
    ckpt = "INSERT INTO ldi_dup.ckpt VALUES (%s, %s)"

    async def blocks() -> AsyncIterator[tuple[bytes, int]]:  # in two, as streamed
        cut = data.index(b"\n") + 1
        yield data[:cut], 1
        yield data[cut:], 2

    def lines() -> Lines:
        return Lines(blocks())

    def checkpoint(n: int) -> Any:
        return lambda done: (ckpt, (0, n * 100 + done.size))

    t = ("ldi_dup", "t")
    conn = await connect_for_load(cfg_of(target))
    try:
        assert await local_infile_allowed(conn)
        info = await table_info(conn, *t)
        with pytest.raises(DMError) as exc:
            await load_data(conn, lines(), info, t, "error", checkpoint(3))
        err = exc.value
        assert err.code == 34101 and err.error_code.cls == "load-unit"
        assert "Duplicate entry '2'" in err.cause and "`ldi_dup`.`t`" in err.message
        # Rolled back as a whole: neither row 1 nor the checkpoint.
        assert target.query("SELECT id, v FROM ldi_dup.t") == [(2, "old")]
        assert target.query("SELECT * FROM ldi_dup.ckpt") == []

        assert await load_data(conn, lines(), info, t, "ignore", checkpoint(2)) == 2
        assert target.query("SELECT id, v FROM ldi_dup.t ORDER BY id") == [
            (1, "a"), (2, "old"), (3, "c")]
        assert await load_data(conn, lines(), info, t, "replace", None) == 4
        assert target.query("SELECT id, v FROM ldi_dup.t ORDER BY id") == [
            (1, "a"), (2, "b"), (3, "c")]
        assert target.query("SELECT * FROM ldi_dup.ckpt") == [(0, 200 + len(data))]

        # A failing checkpoint undoes the data of its chunk.
        with pytest.raises(DMError) as exc:
            await load_data(conn, Lines.of(b"9,'z'\n", 1), info, t, "error", checkpoint(1))
        assert exc.value.code == 34101 and "ckpt" in exc.value.message
        assert target.query("SELECT COUNT(*) FROM ldi_dup.t WHERE id = 9") == [(0,)]
        # The source failing mid-stream: the rows already sent are rolled back, and the
        # connection stays usable.
        async def failing() -> AsyncIterator[tuple[bytes, int]]:
            yield b"10,'x'\n", 1
            raise DUMP_ROW_TOO_LARGE("`s`.`t`", 0)

        with pytest.raises(DMError) as exc:
            await load_data(conn, Lines(failing()), info, t, "ignore", checkpoint(9))
        assert exc.value.code == DUMP_ROW_TOO_LARGE.code
        assert target.query("SELECT COUNT(*) FROM ldi_dup.t WHERE id = 10") == [(0,)]
        with pytest.raises(DMError) as exc:
            await load_data(conn, Lines.of(b"9,'z'\n", 1), info, ("ldi_dup", "nope"), "error")
        assert exc.value.code == 10001 and "doesn't exist" in exc.value.cause

        # The server gets only the data registered for the statement, never a file it
        # names (a rogue server could ask for any path).
        await conn.query("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE ldi_dup.t (v)")
        assert target.query("SELECT COUNT(*) FROM ldi_dup.t") == [(3,)]
    finally:
        conn.close()


async def test_create_target_table_routes_and_checks_structure(target: MariaDBServer) -> None:
    target.execute("DROP DATABASE IF EXISTS ct_routed")
    create = ("CREATE TABLE `orig` (\n  `id` int(11) NOT NULL,\n"
              "  `v` varchar(20) DEFAULT '0000-00-00',\n"
              "  `e` enum('a)','b c') DEFAULT NULL,\n"
              "  `d` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',\n"
              "  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    assert rename_create_table(create, "s`x", "t").startswith(
        "CREATE TABLE IF NOT EXISTS `s``x`.`t` (\n  `id` int(11)")
    assert table_columns(create) == [("id", "int"), ("v", "varchar(20)"),
                                     ("e", "enum('a)','b c')"), ("d", "datetime")]
    async with open_conn(cfg_of(target)) as conn:
        assert await create_target_table(conn, create, "ct_routed", "r`t") is True
        assert await create_target_table(conn, create, "ct_routed", "r`t") is False
        target.execute("CREATE TABLE ct_routed.other (id BIGINT NOT NULL PRIMARY KEY, "
                       "v VARCHAR(20), e ENUM('a)','b c'), d DATETIME NOT NULL)")
        with pytest.raises(DMError) as info:
            await create_target_table(conn, create, "ct_routed", "other")
        with pytest.raises(DMError) as info2:
            await create_target_table(conn, "CREATE VIEW v AS SELECT 1", "ct_routed", "v")
    assert [r[0] for r in target.query("SHOW TABLES FROM ct_routed")] == ["other", "r`t"]
    err = info.value
    assert err.code == 34102 and "`ct_routed`.`other`" in err.message
    assert "`id` bigint" in err.message and "`id` int" in err.message
    assert info2.value.code == 34007


# --- dump files ------------------------------------------------------------------------------


async def test_dump_files_round_trip(source1: MariaDBServer, target: MariaDBServer,
                                     tmp_path: Path) -> None:
    make_sbtest(source1, "df.sb", 1200)  # a dot in the schema name
    target.execute("DROP DATABASE IF EXISTS `df.sb`")
    started = dt.datetime(2026, 1, 2, 3, 4, 5)
    async with await open_consistent_snapshot(cfg_of(source1), 1, "snapshot") as session:
        conn = session.conns[0]
        info = await table_info(conn, "df.sb", "sbtest1")
        write_schema_create(tmp_path, "df.sb")
        write_table_schema(tmp_path, "df.sb", "sbtest1", info.create_sql)
        chunks = await plan_chunks(conn, info, rows_per_chunk=500)
        for c in reversed(chunks):  # written out of order: the listing sorts them
            await write_chunk_file(tmp_path, "df.sb", "sbtest1", c.index,
                                   dump_chunk(conn, info, c, ("df.sb", "sbtest1"),
                                              statement_rows=100))
    write_metadata(tmp_path, session.position, started, started + dt.timedelta(seconds=7))
    assert (tmp_path / chunk_file_name("df.sb", "sbtest1", 2)).name == \
        "df.sb.sbtest1.000000002.sql"
    assert (tmp_path / "metadata").read_text() == (
        "Started dump at: 2026-01-02 03:04:05\nSHOW MASTER STATUS:\n"
        f"\tLog: {session.position.binlog_name}\n\tPos: {session.position.binlog_pos}\n"
        f"\tGTID:{session.position.gtid}\n\nFinished dump at: 2026-01-02 03:04:12\n")

    listing = list_dump(tmp_path)
    assert list(listing.schemas) == ["df.sb"]
    [table] = listing.tables
    assert (table.schema, table.table) == ("df.sb", "sbtest1")
    assert [p.name for p in table.data_files] == [
        f"df.sb.sbtest1.{i:09d}.sql" for i in range(3)]
    assert listing.position == session.position
    assert listing.binlog_name == session.position.binlog_name
    assert listing.skipped == ()  # no leftover *.tmp

    async with open_conn(cfg_of(target)) as tconn:
        await tconn.query("CREATE DATABASE `df.sb`")
        await create_target_table(tconn, read_create_table(table.schema_file), "df.sb",
                                  "sbtest1")
        total = 0
        for path in table.data_files:
            stmts = list(iter_statements(path))
            assert len(stmts) == 4  # 3 chunks of 400 rows, 100 a statement
            total += await load_statements(tconn, stmts, "error", None)
    assert total == 1200
    assert rows_of(source1, "df.sb", "sbtest1", "id") == rows_of(target, "df.sb", "sbtest1",
                                                                "id")


def test_parse_metadata_formats() -> None:
    mysql = ("Started dump at: 2024-05-06 07:08:09\nSHOW MASTER STATUS:\n\tLog: binlog.000012\n"
             "\tPos: 4567\n\tGTID:3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5,\n"
             "4E11FA47-71CA-11E1-9E33-C80AA9429562:1-7\n\n"
             "SHOW SLAVE STATUS:\n\tHost: 10.0.0.1\n\tLog: other-bin.000001\n\tPos: 99\n"
             "\tGTID:\n\nFinished dump at: 2024-05-06 07:08:10\n")
    meta = parse_metadata(mysql)
    assert meta.position == BinlogPosition(
        "binlog.000012", 4567,
        "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5,4E11FA47-71CA-11E1-9E33-C80AA9429562:1-7")
    assert (meta.started_at, meta.finished_at) == ("2024-05-06 07:08:09", "2024-05-06 07:08:10")
    assert parse_metadata("Started dump at: x\nFinished dump at: y\n").position is None


def test_iter_statements_respects_quotes_comments_and_blocks(tmp_path: Path) -> None:
    path = tmp_path / "x.sql"
    big = "a;'\\\"" * 300_000  # longer than a read block: the statement spans blocks
    path.write_bytes(
        b"-- leading comment ; here\n/* plain ; comment */ /*!40101 SET NAMES binary*/;\n"
        b"INSERT INTO `a;b` VALUES ('x;\\'y', \"q;\\\"\", 'it''s;', 1-1, 2/2, '--;', '/*;*/');"
        b"\n# hash ; comment\n;\nINSERT INTO t VALUES ('" + big.replace("\\", "\\\\")
        .replace("'", "\\'").encode() + b"');\nINSERT INTO t VALUES (3)\n")
    stmts = list(iter_statements(path))
    assert stmts[0] == b"/*!40101 SET NAMES binary*/;\n"
    assert stmts[1] == (b"INSERT INTO `a;b` VALUES ('x;\\'y', \"q;\\\"\", 'it''s;', 1-1, 2/2, "
                        b"'--;', '/*;*/');\n")
    assert stmts[2].startswith(b"INSERT INTO t VALUES ('a;\\'") and len(stmts[2]) > 2_000_000
    assert stmts[3] == b"INSERT INTO t VALUES (3);\n"
    assert len(stmts) == 4
    path.write_bytes(b"INSERT INTO t VALUES (1);\nINSERT INTO t VALUES ('open;\n")
    with pytest.raises(DMError) as info:
        list(iter_statements(path))
    assert info.value.code == 34002


def test_list_dump_errors(tmp_path: Path) -> None:
    with pytest.raises(DMError) as info:
        list_dump(tmp_path / "missing")
    assert info.value.code == 34014
    (tmp_path / "db.t.000000000.sql").write_text("INSERT INTO t VALUES (1);\n")
    with pytest.raises(DMError) as info:
        list_dump(tmp_path)
    assert info.value.code == 34012
    (tmp_path / "db-schema-create.sql").write_text("CREATE DATABASE db;\n")
    with pytest.raises(DMError) as info:
        list_dump(tmp_path)
    assert info.value.code == 34013


MYDUMPER = shutil.which("mydumper")


@pytest.mark.skipif(MYDUMPER is None, reason="mydumper is not installed "
                                             "(apt-get install -y mydumper)")
async def test_reads_a_real_mydumper_dump(source1: MariaDBServer, target: MariaDBServer,
                                          tmp_path: Path) -> None:
    fresh_schema(source1, "md_src",
                 "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(50), b VARBINARY(300), "
                 "d DATETIME(6), n DECIMAL(20,5), f DOUBLE)",
                 "CREATE TABLE `odd.name` (id INT PRIMARY KEY)")
    source1.executemany(
        "INSERT INTO md_src.t VALUES (%s, %s, %s, %s, %s, %s)",
        [(i, f"it's \\ \"{i}\";\n😀" if i % 3 else None, bytes(range(256)) if i % 2 else b"",
          "2024-02-29 01:02:03.456789", "-12345.67891", 0.1 * i) for i in range(1, 301)])
    source1.execute("INSERT INTO md_src.`odd.name` VALUES (1), (2)")
    out = tmp_path / "md"
    proc = await asyncio.create_subprocess_exec(
        MYDUMPER or "mydumper", "-h", source1.host, "-P", str(source1.port), "-u",
        source1.user, "-p", source1.password, "-B", "md_src", "-o", str(out), "-t", "2",
        "-r", "100", "--trx-consistency-only",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode(errors="replace")

    listing = list_dump(out)
    assert list(listing.schemas) == ["md_src"]
    assert [(t.schema, t.table) for t in listing.tables] == [("md_src", "odd.name"),
                                                             ("md_src", "t")]
    [(master_log, master_pos)] = [r[:2] for r in source1.query("SHOW MASTER STATUS")]
    assert listing.binlog_name == master_log and listing.binlog_pos == master_pos
    assert re.fullmatch(r"0-101-\d+", listing.gtid)
    t = listing.table("md_src", "t")
    assert len(t.data_files) >= 3  # -r 100 splits the 300 rows
    sample = next(iter_statements(t.data_files[0]))
    assert sample.startswith(b"/*!40101 SET NAMES binary*/")

    target.execute("DROP DATABASE IF EXISTS md_tgt")
    async with open_conn(cfg_of(target)) as tconn:
        for dt_ in listing.tables:
            await create_target_table(tconn, read_create_table(dt_.schema_file), "md_tgt",
                                      dt_.table + "_r")
            for path in dt_.data_files:
                # mydumper names the table without its schema: load under the routed name.
                await load_statements(tconn, iter_statements(path), "error", None,
                                      target=("md_tgt", dt_.table + "_r"))
    assert rows_of(source1, "md_src", "t", "id") == rows_of(target, "md_tgt", "t_r", "id")
    assert target.query("SELECT id FROM md_tgt.`odd.name_r` ORDER BY id") == [(1,), (2,)]
