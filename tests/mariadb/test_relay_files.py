"""Relay log files (mysqlkit.relay): written from a private MariaDB, compared byte for byte
with the source's binlog files, read back with relay_reader and compared change
for change with reading the source directly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from errors import DMError
from mysqlkit.binlog.reader import (
    BinlogReader,
    Change,
    Commit,
    Heartbeat,
    QueryChange,
    Rotate,
    RowsChange,
    Start,
)
from mysqlkit.position import BinlogPosition
from mysqlkit.relay.files import purge_relay, read_meta, relay_files
from mysqlkit.relay.reader import relay_reader
from mysqlkit.relay.writer import RelayWriter
from mysqlkit.upstream import ConnConfig
from testbed.mariadb import MariaDBServer

pytestmark = pytest.mark.timeout(180)

_ids = iter(range(7500, 7999))


@pytest.fixture(scope="module")
def server() -> Iterator[MariaDBServer]:
    s = MariaDBServer(161, name="relay-src").start()
    try:
        yield s
    finally:
        s.stop()


def cfg_of(server: MariaDBServer) -> ConnConfig:
    return ConnConfig(**server.conn_kwargs())


def master_pos(server: MariaDBServer) -> BinlogPosition:
    [(name, pos, *_)] = server.query("SHOW MASTER STATUS")
    [(gtid,)] = server.query("SELECT @@gtid_binlog_pos")
    return BinlogPosition(str(name), int(pos), str(gtid))


class Writer:
    """A RelayWriter running in a thread."""

    def __init__(self, server: MariaDBServer, relay_dir: Path,
                 start: BinlogPosition | str) -> None:
        self.w = RelayWriter(cfg_of(server), next(_ids), relay_dir, start, "mariadb",
                             heartbeat=0.2)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.w.run()
        except BaseException as exc:  # handed to the test
            self.errors.append(exc)

    def wait_for(self, pos: BinlogPosition, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (self.w.status()[0], self.w.status()[1]) < (pos.binlog_name, pos.binlog_pos):
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, (self.w.status(), pos)
            time.sleep(0.05)

    def stop(self) -> None:
        self.w.close()
        self.thread.join(10)
        assert not self.thread.is_alive()
        assert not self.errors, self.errors


def workload(server: MariaDBServer, schema: str, n: int, first: int = 1) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        for i in range(first, first + n):
            cur.execute(f"INSERT INTO {schema}.t (id, v, f) VALUES ({i}, 'v{i}', {i * 1.5})")
            if i % 3 == 0:
                cur.execute(f"UPDATE {schema}.t SET v = CONCAT(v, '+') WHERE id = {i - 1}")
            if i % 5 == 0:
                cur.execute("BEGIN")
                cur.execute(f"DELETE FROM {schema}.t WHERE id = {i - 2}")
                cur.execute(f"INSERT INTO {schema}.u VALUES ({i})")
                cur.execute("COMMIT")


def read(reader: BinlogReader, until: list[BinlogPosition] | None = None) -> list[Change]:
    """Every change but heartbeats; a blocking reader stops at the resume point `until[0]`
    (a box: the test sets it while the reader runs)."""
    out: list[Change] = []
    with reader:
        for ch in reader:
            if not isinstance(ch, Heartbeat):
                out.append(ch)
            if until is not None and isinstance(ch, Commit | QueryChange | Heartbeat) and \
                    (ch.pos.binlog_name, ch.pos.binlog_pos) >= (until[0].binlog_name,
                                                               until[0].binlog_pos):
                break
    return out


def key(changes: list[Change]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for ch in changes:
        if isinstance(ch, RowsChange):
            out.append((ch.schema, ch.table, ch.kind, ch.rows, ch.updates, ch.column_count,
                        ch.timestamp))
        elif isinstance(ch, QueryChange):
            out.append(("query", ch.schema, ch.sql, ch.timestamp, ch.pos))
        elif isinstance(ch, Commit):
            out.append(("commit", ch.timestamp, ch.pos))
        elif isinstance(ch, Rotate):
            out.append(("rotate", ch.binlog_name, ch.pos))
    return out


def assert_same_files(server: MariaDBServer, relay_dir: Path, names: list[str]) -> None:
    for name in names:
        upstream = (server.datadir / name).read_bytes()
        local = (relay_dir / name).read_bytes()
        assert len(local) == len(upstream), name
        assert local == upstream, name


def assert_same_head(server: MariaDBServer, relay_dir: Path, name: str, end: int,
                     start: int = 0) -> None:
    """The file being written equals the source's up to `end` (from `start`), except the
    "in use" flag of the format description event, which the source sets in its open file
    and clears in what it sends."""
    local = (relay_dir / name).read_bytes()[:end]
    upstream = (server.datadir / name).read_bytes()[:end]
    assert len(local) == len(upstream) == end
    flags_at = 4 + 17
    if start <= flags_at:
        assert local[start:flags_at] == upstream[start:flags_at]
        assert local[flags_at] == upstream[flags_at] & ~1
        start = flags_at + 1
    assert local[start:] == upstream[start:]


def only(schema: str) -> Callable[[str, str], bool]:
    return lambda s, t: s == schema


def fresh_schema(server: MariaDBServer, schema: str) -> None:
    server.execute(f"DROP DATABASE IF EXISTS {schema}; CREATE DATABASE {schema}; "
                   f"CREATE TABLE {schema}.t (id INT PRIMARY KEY, v VARCHAR(40), f DOUBLE); "
                   f"CREATE TABLE {schema}.u (id INT PRIMARY KEY)")


def test_relay_mirrors_the_source_and_reads_the_same(server: MariaDBServer,
                                                     tmp_path: Path) -> None:
    fresh_schema(server, "rl_a")
    server.execute("FLUSH BINARY LOGS")
    first = master_pos(server)
    relay_dir = tmp_path / "relay"
    writer = Writer(server, relay_dir, BinlogPosition(first.binlog_name, 4, ""))
    # A reader following the relay as it is written, across the rotation.
    follow: list[Change] = []
    follower = threading.Thread(target=lambda: follow.extend(read(
        relay_reader(relay_dir, Start.at(first), heartbeat=0.2),
        until=end_box)), daemon=True)
    end_box: list[BinlogPosition] = [BinlogPosition("~", 0, "")]
    deadline = time.monotonic() + 10
    while read_meta(relay_dir) is None:  # the writer creates the first file
        assert time.monotonic() < deadline and not writer.errors, writer.errors
        time.sleep(0.05)
    follower.start()

    workload(server, "rl_a", 30)
    mid = master_pos(server)
    server.execute("ALTER TABLE rl_a.t ADD COLUMN w INT")
    server.execute("FLUSH BINARY LOGS")  # rotation
    server.execute("INSERT INTO rl_a.t VALUES (1000, 'x', 0, 7)")
    workload(server, "rl_a", 20, first=2000)
    end = master_pos(server)
    end_box[0] = end
    writer.wait_for(end)
    follower.join(30)
    assert not follower.is_alive()

    files = relay_files(relay_dir)
    assert files[0] == first.binlog_name and files[-1] == end.binlog_name and len(files) >= 2
    # Complete files are byte-identical; so is the current one up to the end position.
    assert_same_files(server, relay_dir, files[:-1])
    assert_same_head(server, relay_dir, files[-1], end.binlog_pos)
    meta = read_meta(relay_dir)
    assert meta is not None and meta.flavor == "mariadb"
    name, pos, gtid = writer.w.status()
    assert (name, gtid) == (end.binlog_name, end.gtid) and pos >= end.binlog_pos

    cfg = cfg_of(server)
    want = only("rl_a")
    for start in (first, mid):
        upstream = read(BinlogReader(cfg, next(_ids), Start.at(start), blocking=False,
                                     want_table=want))
        local = read(relay_reader(relay_dir, Start.at(start), blocking=False,
                                  want_table=want))
        assert key(local) == key(upstream)
        assert any(isinstance(c, Rotate) for c in local)
        assert sum(isinstance(c, RowsChange) for c in local) > 20
        commits = [c for c in local if isinstance(c, Commit)]
        assert commits[-1].pos == end
    # The follower saw everything the source has, with the same positions.
    upstream = read(BinlogReader(cfg, next(_ids), Start.at(first), blocking=False))
    assert key(follow) == key(upstream)

    # GTID mode reads the same transactions from the relay as from the source.
    upstream = read(BinlogReader(cfg, next(_ids), Start(gtid=mid.gtid), gtid_mode=True,
                                 blocking=False, want_table=want))
    local = read(relay_reader(relay_dir, Start(gtid=mid.gtid), gtid_mode=True,
                              blocking=False, want_table=want))
    assert [k for k in key(local) if k[0] != "rotate"] == \
        [k for k in key(upstream) if k[0] != "rotate"]
    writer.stop()


def test_writer_restart_no_gap_no_duplicate(server: MariaDBServer, tmp_path: Path) -> None:
    fresh_schema(server, "rl_b")
    server.execute("FLUSH BINARY LOGS")
    first = master_pos(server)
    relay_dir = tmp_path / "relay"
    writer = Writer(server, relay_dir, first)  # mid-file: the head becomes a filler
    load = threading.Thread(target=workload, args=(server, "rl_b", 60), daemon=True)
    load.start()
    time.sleep(0.3)
    writer.stop()  # mid-stream, probably mid-transaction
    stopped_at = writer.w.status()
    load.join(60)
    # A crash while writing: half an event at the end of the last file.
    last = relay_dir / relay_files(relay_dir)[-1]
    size = last.stat().st_size
    with open(last, "ab") as fh:
        fh.write((server.datadir / last.name).read_bytes()[size:size + 30] or b"\0" * 30)
    server.execute("FLUSH BINARY LOGS")
    workload(server, "rl_b", 10, first=500)
    end = master_pos(server)

    writer = Writer(server, relay_dir, first)
    writer.wait_for(end)
    writer.stop()
    assert (stopped_at[0], stopped_at[1]) <= (end.binlog_name, end.binlog_pos)
    files = relay_files(relay_dir)
    upstream_first = (server.datadir / files[0]).read_bytes()
    local_first = (relay_dir / files[0]).read_bytes()
    # The head before the start position is one filler event; from there on the bytes are
    # the source's.
    assert len(local_first) == len(upstream_first)
    assert local_first[first.binlog_pos:] == upstream_first[first.binlog_pos:]
    assert_same_files(server, relay_dir, files[1:-1])
    assert_same_head(server, relay_dir, files[-1], end.binlog_pos)

    cfg = cfg_of(server)
    want = only("rl_b")
    upstream = read(BinlogReader(cfg, next(_ids), Start.at(first), blocking=False,
                                 want_table=want))
    local = read(relay_reader(relay_dir, Start.at(first), blocking=False,
                              want_table=want))
    assert key(local) == key(upstream)
    inserted = [r[0] for c in local if isinstance(c, RowsChange) and c.table == "t"
                and c.kind == "insert" for r in c.rows]
    assert inserted == [str(i) for i in range(1, 61)] + [str(i) for i in range(500, 510)]
    # Before the writer's start the relay has only a filler: not a place to read from.
    with pytest.raises(DMError) as exc:
        read(relay_reader(relay_dir, Start(first.binlog_name, 4), blocking=False))
    assert exc.value.code == 22101


@pytest.fixture(params=[False, True], ids=["plain", "log_bin_compress"])
def compressed(request: pytest.FixtureRequest, server: MariaDBServer) -> Iterator[bool]:
    """Both ways: binlog events as they are, and compressed by MariaDB (statements of 10+
    bytes and every rows event)."""
    if not request.param:
        yield False
        return
    server.execute("SET GLOBAL log_bin_compress = ON, GLOBAL log_bin_compress_min_len = 10")
    try:
        yield True
    finally:
        server.execute("SET GLOBAL log_bin_compress = OFF, "
                       "GLOBAL log_bin_compress_min_len = DEFAULT")


def test_writer_from_gtid_fills_the_skipped_head(server: MariaDBServer, tmp_path: Path,
                                                 compressed: bool) -> None:
    schema = "rl_cz" if compressed else "rl_c"
    fresh_schema(server, schema)
    server.execute("FLUSH BINARY LOGS")
    workload(server, schema, 5)
    server.execute(f"ALTER TABLE {schema}.t ADD COLUMN skipped_ddl INT")
    start = master_pos(server)
    workload(server, schema, 5, first=100)
    server.execute(f"ALTER TABLE {schema}.t ADD COLUMN relayed_ddl INT")
    workload(server, schema, 5, first=200)
    end = master_pos(server)
    events = {str(r[2]) for r in server.query(f"SHOW BINLOG EVENTS IN '{start.binlog_name}'")}
    assert ("Query_compressed" in events) == compressed, events
    relay_dir = tmp_path / "relay"
    writer = Writer(server, relay_dir, start.gtid)
    writer.wait_for(end)
    writer.stop()
    [name] = relay_files(relay_dir)
    assert_same_head(server, relay_dir, name, end.binlog_pos, start=start.binlog_pos)
    want = only(schema)
    upstream = read(BinlogReader(cfg_of(server), next(_ids), Start.at(start), blocking=False,
                                 want_table=want))
    relayed = read(relay_reader(relay_dir, Start.at(start), blocking=False,
                                want_table=want))
    assert key(relayed) == key(upstream) and len(upstream) >= 20
    assert [c.sql for c in relayed if isinstance(c, QueryChange)] == [
        f"ALTER TABLE {schema}.t ADD COLUMN relayed_ddl INT"]
    upstream = read(BinlogReader(cfg_of(server), next(_ids), Start(gtid=start.gtid),
                                 gtid_mode=True, blocking=False, want_table=want))
    relayed = read(relay_reader(relay_dir, Start(gtid=start.gtid), gtid_mode=True,
                                blocking=False, want_table=want))
    assert [k for k in key(relayed) if k[0] != "rotate"] == \
        [k for k in key(upstream) if k[0] != "rotate"]
    # An older GTID set needs transactions the relay skipped.
    older = master_pos(server).gtid.rsplit("-", 1)[0] + "-1"
    with pytest.raises(DMError) as exc:
        read(relay_reader(relay_dir, Start(gtid=older), gtid_mode=True,
                          blocking=False))
    assert exc.value.code == 22101


def test_encrypted_binlog_is_read_and_relayed(tmp_path: Path) -> None:
    """MariaDB with encrypt_binlog=ON: the source decrypts what it sends; the reader reads
    it straight and from the relay alike."""
    keys = tmp_path / "keys.txt"
    keys.write_text("1;" + "5e" * 32 + "\n")
    src = MariaDBServer(162, name="relay-enc", extra_args=[
        "--plugin-load-add=file_key_management", f"--file-key-management-filename={keys}",
        "--encrypt-binlog=ON"]).start()
    try:
        src.execute("FLUSH BINARY LOGS")
        first = master_pos(src)
        fresh_schema(src, "rl_enc")
        workload(src, "rl_enc", 20)
        end = master_pos(src)
        events = [str(r[2]) for r in src.query(f"SHOW BINLOG EVENTS IN '{first.binlog_name}'")]
        assert events[1] == "Start_encryption", events
        assert b"rl_enc" not in (src.datadir / first.binlog_name).read_bytes()  # encrypted

        relay_dir = tmp_path / "relay"
        writer = Writer(src, relay_dir, BinlogPosition(first.binlog_name, 4, ""))
        writer.wait_for(end)
        writer.stop()
        want = only("rl_enc")
        upstream = read(BinlogReader(cfg_of(src), next(_ids), Start.at(first),
                                     blocking=False, want_table=want))
        relayed = read(relay_reader(relay_dir, Start.at(first), blocking=False,
                                    want_table=want))
        assert key(relayed) == key(upstream)
        rows = [r for c in upstream if isinstance(c, RowsChange) and c.kind == "insert"
                for r in c.rows]
        assert ("1", "_binary'v1'", "1.5") in rows and len(rows) >= 20
        assert [c for c in upstream if isinstance(c, Commit)][-1].pos == end
    finally:
        src.stop()


def test_purge_refuses_protected_files(tmp_path: Path) -> None:
    relay_dir = tmp_path / "relay"
    relay_dir.mkdir()
    for i in range(1, 6):
        (relay_dir / f"mysql-bin.{i:06d}").write_bytes(b"\xfebin")
    (relay_dir / "relay.meta").write_text(
        '{"flavor": "mariadb", "binlog_name": "mysql-bin.000005", "binlog_pos": 4, '
        '"binlog_gtid": ""}')
    protected = BinlogPosition("mysql-bin.000003", 1234, "")
    with pytest.raises(DMError) as exc:
        purge_relay(relay_dir, "mysql-bin.000004", protected)
    assert exc.value.code == 30101 and "mysql-bin.000003" in str(exc.value)
    assert len(relay_files(relay_dir)) == 5
    assert purge_relay(relay_dir, "mysql-bin.000003", protected) == [
        "mysql-bin.000001", "mysql-bin.000002"]
    assert relay_files(relay_dir) == [f"mysql-bin.{i:06d}" for i in (3, 4, 5)]
    with pytest.raises(DMError):  # never the file being written
        purge_relay(relay_dir, "mysql-bin.000006")
    assert purge_relay(relay_dir, "mysql-bin.000003", "mysql-bin.000003") == []
