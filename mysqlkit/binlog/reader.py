"""Reading a source's binlog for incremental replication (synchronous: run it in a thread).

pymysql connects (auth, TLS); `mysqlkit.binlog.stream` sends the dump command and frames
the raw events; this module parses the few event kinds replication needs straight from the
received bytes (`mysqlkit.binlog.events`) and decodes row images with our own
`mysqlkit.binlog.rowcodec` into SQL literal text, only for the tables the caller wants: rows
events of other tables are skipped by table id without reading their bodies.

Why not python-mysql-replication's event objects: measured on the 2-core bench machine
(bench/decode.py) its framing alone ran ~15k events/s (a packet wrapper and an event
object per event, Table and Column objects per table map); see docs/benchmarks.md for
the figures of this lean path.

What comes out (`BinlogReader`): `RowsChange` per rows event, `QueryChange` per statement
other than BEGIN/COMMIT (DDL...), `Commit` at each transaction end, `Rotate` when the
binlog file changes and `Heartbeat` when the source has had nothing new for `heartbeat`
seconds (the reader is caught up). Every `pos` is a resume point: restarting from it gives
exactly the events after it. Values are positional (with binlog_row_metadata=MINIMAL the
binlog has no column names): callers map them with their schema tracker.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import pymysql

from errors import (
    BINLOG_DECODE,
    BINLOG_NO_START,
    BINLOG_READ,
    BINLOG_START_TIME,
    DMError,
)
from mysqlkit.binlog import events as E
from mysqlkit.binlog.connection import conn_settings, detect_flavor, translate_error
from mysqlkit.binlog.rowcodec import Row, RowDecoder, TableMapInfo
from mysqlkit.binlog.stream import ConnectionLost, EventSource, NetworkEventSource
from mysqlkit.position import BinlogPosition, GtidSet
from mysqlkit.upstream import DEFAULT_CONNECT_TIMEOUT, ConnConfig

__all__ = [
    "BinlogReader",
    "Change",
    "Commit",
    "Heartbeat",
    "QueryChange",
    "Rotate",
    "RowsChange",
    "Start",
    "find_start_by_time",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Start:
    """Where to start: a binlog position (with the GTID set executed there, if known),
    a GTID set (GTID mode), or the first transaction at or after `start_time` (epoch s)."""

    binlog_name: str = ""
    binlog_pos: int = 4
    gtid: str = ""
    start_time: int | None = None

    @classmethod
    def at(cls, pos: BinlogPosition) -> Start:
        return cls(pos.binlog_name, pos.binlog_pos, pos.gtid)


@dataclass(slots=True)
class RowsChange:
    """One rows event of a wanted table: `rows` (insert/delete) or `updates` (before,
    after) pairs, each value the text of an SQL literal."""

    schema: str
    table: str
    kind: str  # "insert" | "update" | "delete"
    rows: list[Row]
    updates: list[tuple[Row, Row]]
    column_count: int
    timestamp: int


@dataclass(slots=True)
class QueryChange:
    """A statement other than BEGIN/COMMIT (DDL, mostly). `schema` is the statement's
    current database; `pos` the resume point after it."""

    schema: str
    sql: str
    timestamp: int
    pos: BinlogPosition


@dataclass(slots=True)
class Commit:
    """A transaction end; `pos` is the resume point after it, its gtid the executed set
    including this transaction."""

    timestamp: int
    pos: BinlogPosition


@dataclass(slots=True)
class Rotate:
    """The binlog moved to a new file; `pos` (its start) is a resume point."""

    binlog_name: str
    pos: BinlogPosition


@dataclass(slots=True)
class Heartbeat:
    """Nothing newer on the source for a heartbeat period: the reader is caught up.
    `pos` is the last resume point, `timestamp` the local time (epoch seconds)."""

    pos: BinlogPosition
    timestamp: float


Change = RowsChange | QueryChange | Commit | Rotate | Heartbeat


@dataclass(slots=True)
class _TxnStart:
    """Internal (find_start_by_time): the first event of a transaction, with the resume
    point before it."""

    timestamp: int
    pos: BinlogPosition


# --- the reader ----------------------------------------------------------------------------


def _all_tables(schema: str, table: str) -> bool:
    return True


def _no_unsigned(schema: str, table: str) -> Sequence[bool] | None:
    return None


_ROWS = E.ROWS_EVENTS
_HEADER = E.HEADER.unpack_from
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_MARIADB_GTID = struct.Struct("<QI").unpack_from
_HEARTBEATS = frozenset({E.HEARTBEAT, E.HEARTBEAT_V2})
_QUERIES = E.QUERY_EVENTS
_UNSUPPORTED = {
    E.TRANSACTION_PAYLOAD: "binlog_transaction_compression is not supported",
    E.PARTIAL_UPDATE_ROWS: "partial JSON updates are not supported "
                           "(binlog_row_value_options must be empty)",
}
# MariaDB's encrypt_binlog=ON needs nothing here: the source decrypts the events it sends a
# replica, and the START_ENCRYPTION event that it sends too (kept in the relay) only marks
# the point in its file from which the file is encrypted.


class SourceOpener(Protocol):
    """Where a reader gets its raw events other than from the source server (the relay
    files: `mysqlkit.relay.reader.relay_reader`): the events from `start` and the flavor of
    the binlog they come from (`flavor` is the caller's, None when unknown)."""

    def __call__(self, start: Start, *, flavor: str | None, gtid_mode: bool, blocking: bool,
                 heartbeat: float) -> tuple[EventSource, str]: ...


class BinlogReader:
    """A synchronous iterator of `Change`s from `start`; run it in a thread.

    - `want_table(schema, table)`: rows of other tables are skipped without decoding;
    - `unsigned_of(schema, table)`: per-column unsigned flags from the caller's schema
      tracker (None: take them from the binlog's optional metadata, if any). It is asked
      lazily, at the first rows event of a table map after the events before it have been
      yielded, and again after every QueryChange: a caller that applies each DDL to its
      tracker before pulling the next event gets flags that match the rows;
    - `blocking=False` ends the iteration when the reader reaches the end of the binlog;
    - the source sends a heartbeat after `heartbeat` idle seconds (→ `Heartbeat`); a read
      that sees nothing for `read_timeout` (default 3 heartbeats, at least 10 s) means a
      dead peer → BINLOG_READ. Errors are DMErrors: BINLOG_PURGED when the source no
      longer has the binlog asked for, BINLOG_READ for a lost connection (resume from the
      last checkpoint), BINLOG_DECODE for rows that do not decode.
    `close()` (from any thread) stops it; the iteration then ends without error.
    `opener` (optional): read the events from elsewhere (the relay) instead of `conn`.
    `on_idle` (optional, settable until the iteration starts) is called in the reading
    thread when the reader has used up what the source sent and is about to wait for
    more: a consumer that batches changes hands them over then (low latency when caught
    up, full batches when behind).
    """

    def __init__(
        self,
        conn: ConnConfig,
        server_id: int,
        start: Start,
        *,
        flavor: str | None = None,
        gtid_mode: bool = False,
        want_table: Callable[[str, str], bool] = _all_tables,
        unsigned_of: Callable[[str, str], Sequence[bool] | None] = _no_unsigned,
        blocking: bool = True,
        heartbeat: float = 1.0,
        read_timeout: float | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        on_idle: Callable[[], None] | None = None,
        opener: SourceOpener | None = None,
    ) -> None:
        if flavor not in (None, "mariadb", "mysql"):
            raise ValueError(f"flavor must be 'mariadb' or 'mysql', not {flavor!r}")
        self.cfg = conn
        self.server_id = server_id
        self.start = start
        self.flavor = flavor
        self.gtid_mode = gtid_mode
        self.want_table = want_table
        self.unsigned_of = unsigned_of
        self.blocking = blocking
        self.heartbeat = heartbeat
        self.read_timeout = read_timeout if read_timeout is not None else max(
            3 * heartbeat, 10.0)
        self.connect_timeout = connect_timeout
        self.on_idle = on_idle
        self._source: EventSource | None = None
        self._closed = False
        self._file = start.binlog_name
        self._gtids = GtidSet("mariadb")
        self._resume = BinlogPosition(start.binlog_name, start.binlog_pos, start.gtid)
        # Set by find_start_by_time: yield a _TxnStart at the first transaction whose first
        # event is at or after this time, then stop.
        self._stop_at_time: int | None = None
        self._opener = opener

    @property
    def position(self) -> BinlogPosition:
        """The last resume point seen (the start until the first Commit/QueryChange)."""
        return self._resume

    def close(self) -> None:
        self._closed = True
        source, self._source = self._source, None
        if source is not None:
            with contextlib.suppress(Exception):
                source.close()

    def __enter__(self) -> BinlogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Change]:
        # _TxnStart only comes out when find_start_by_time set _stop_at_time.
        return cast(Iterator[Change], self._iterate())

    def _what(self) -> str:
        return (f"GTID set '{self.start.gtid}'" if self.gtid_mode
                else f"'{self.start.binlog_name}'")

    def _iterate(self) -> Iterator[Change | _TxnStart]:
        try:
            yield from self._run(self._open())
        except DMError:
            raise
        except (pymysql.MySQLError, OSError, ConnectionLost) as exc:
            if not self._closed:
                raise translate_error(exc, self.cfg, self._what()) from None
        except Exception as exc:  # a malformed event (IndexError, struct.error...)
            if not self._closed:
                raise BINLOG_READ(f"{type(exc).__name__}: {exc}") from None
        finally:
            self.close()

    def _open(self) -> EventSource:
        if self._opener is not None:
            return self._open_elsewhere(self._opener)
        start = self.start
        if self.flavor is None:
            self.flavor = detect_flavor(self.cfg, self.connect_timeout)
        self._gtids = GtidSet.parse(start.gtid, self.flavor)
        if start.start_time is not None:
            found = find_start_by_time(self.cfg, start.start_time, server_id=self.server_id,
                                       flavor=self.flavor)
            start = Start.at(found)
            self._gtids = GtidSet.parse(found.gtid, self.flavor)
            self._resume = found
            self._file = found.binlog_name
        settings = conn_settings(self.cfg, self.connect_timeout, self.read_timeout)
        heartbeat = self.heartbeat if self.blocking else 0.0
        if self.gtid_mode and self.start.start_time is None:
            # A start_time was resolved to a position (exact, its GTID set known) above.
            if not start.gtid:
                raise BINLOG_NO_START("GTID mode needs a GTID set")
            source = NetworkEventSource(settings, self.server_id, flavor=self.flavor,
                                        gtid=start.gtid, blocking=self.blocking,
                                        heartbeat=heartbeat, read_timeout=self.read_timeout)
        else:
            if not start.binlog_name:
                raise BINLOG_NO_START("no binlog file given")
            source = NetworkEventSource(settings, self.server_id, flavor=self.flavor,
                                        binlog_name=start.binlog_name,
                                        binlog_pos=start.binlog_pos, blocking=self.blocking,
                                        heartbeat=heartbeat, read_timeout=self.read_timeout)
        self._source = source
        if self._closed:  # closed while connecting
            source.close()
        return source

    def _open_elsewhere(self, opener: SourceOpener) -> EventSource:
        source, self.flavor = opener(self.start, flavor=self.flavor, gtid_mode=self.gtid_mode,
                                     blocking=self.blocking, heartbeat=self.heartbeat)
        self._gtids = GtidSet.parse(self.start.gtid, self.flavor)
        self._source = source
        if self._closed:
            source.close()
        return source

    def _pos(self, log_pos: int) -> BinlogPosition:
        return BinlogPosition(self._file, log_pos, str(self._gtids))

    # One loop over every event of the binlog, dispatching by type inline: the hot path
    # (bench/decode.py); a call per event kind costs measurable throughput.
    def _run(self, source: EventSource) -> Iterator[Change | _TxnStart]:  # noqa: C901
        """The event loop: one header unpack per event, rows events first (the hot path),
        everything else by type. Kept in one function: locals are the cheapest lookups."""
        gtids = self._gtids
        # table_id -> [raw table map body, schema, table, wanted, decoder or None]
        tables: dict[int, list[Any]] = {}
        pending: tuple[Any, ...] | None = None  # the GTID of the running transaction
        in_txn = False
        stop_at = self._stop_at_time
        seen_start = False  # the first (fake) rotate of the stream was seen
        declared_crc = source.crc_len
        crc = declared_crc  # of the current file, once its format description is read
        fde: E.FormatDescription | None = None
        tid_len = 6
        query_ph = 13
        rows_ph = {t: 8 for t in _ROWS}
        want_table = self.want_table
        rows_get = _ROWS.get
        tables_get = tables.get
        on_idle = self.on_idle
        for buf, pos in source.events(mark_refill=on_idle is not None):
            if pos < 0:
                assert on_idle is not None
                on_idle()
                continue
            ts, etype, _srv, size, log_pos, _flags = _HEADER(buf, pos)
            rk = rows_get(etype)
            if rk is not None:
                body = pos + 19
                tid = int.from_bytes(buf[body:body + tid_len], "little")
                entry = tables_get(tid)
                if stop_at is not None and not in_txn and pending is None:
                    in_txn = True
                    if ts >= stop_at:
                        yield _TxnStart(ts, self._resume)
                        return
                if entry is None or not entry[3]:
                    continue
                dec = entry[4]
                if dec is None:
                    dec = entry[4] = self._decoder(entry[5], entry[1], entry[2])
                kind, v2, packed = rk
                p = body + rows_ph[etype]
                if v2:  # the extra-data block's length includes its own 2 bytes
                    p += _U16(buf, p - 2)[0] - 2
                ncols = buf[p]
                if ncols < 251:
                    p += 1
                else:
                    ncols, p = E.lenenc(buf, p)
                if ncols != dec.column_count:
                    raise BINLOG_DECODE(f"`{entry[1]}`.`{entry[2]}`",
                                        f"{ncols} columns in the rows event, "
                                        f"{dec.column_count} in its table map")
                full = dec.full_bitmap
                nb = len(full)
                if buf[p:p + nb] != full or (
                        kind == "update" and buf[p + nb:p + 2 * nb] != full):
                    raise BINLOG_DECODE(f"`{entry[1]}`.`{entry[2]}`", "the row image is not "
                                        "complete: binlog_row_image must be FULL")
                end = pos + size - crc
                p += 2 * nb if kind == "update" else nb
                if packed:  # log_bin_compress: the row images after the bitmaps
                    buf = self._uncompress(buf, p, end, entry)
                    p, end = 0, len(buf)
                if kind == "update":
                    yield RowsChange(entry[1], entry[2], kind, [], dec.updates(buf, p, end),
                                     ncols, ts)
                else:
                    yield RowsChange(entry[1], entry[2], kind, dec.rows(buf, p, end), [],
                                     ncols, ts)
            elif etype == E.TABLE_MAP:
                body = pos + 19
                end = pos + size - crc
                raw = buf[body:end]
                tid = int.from_bytes(buf[body:body + tid_len], "little")
                old = tables_get(tid)
                if old is None or old[0] != raw:
                    # Parsed now for the names; columns are decoded at the first rows event.
                    _, info = E.parse_table_map(buf, body, end, tid_len)
                    tables[tid] = [raw, info.schema, info.table,
                                   bool(want_table(info.schema, info.table)), None, info]
            elif etype == E.XID:
                in_txn = False
                if pending is not None:
                    self._apply_gtid(gtids, pending)
                    pending = None
                self._resume = self._pos(log_pos)
                yield Commit(ts, self._resume)
            elif etype in _QUERIES:
                body = pos + 19
                status_len = _U16(buf, body + 11)[0]
                db_len = buf[body + 8]
                db_at = body + query_ph + status_len
                q = db_at + db_len + 1
                q_end = pos + size - crc
                text = buf
                if etype != E.QUERY:  # log_bin_compress: the statement text is compressed
                    text = self._uncompress(buf, q, q_end, None)
                    q, q_end = 0, len(text)
                head = text[q:q + 12].lstrip().upper()
                if head.startswith(b"BEGIN"):
                    if stop_at is not None and not in_txn and pending is None:
                        if ts >= stop_at:
                            yield _TxnStart(ts, self._resume)
                            return
                    in_txn = True
                    continue
                if head.startswith((b"SAVEPOINT", b"ROLLBACK TO", b"XA ")):
                    continue
                if stop_at is not None and not in_txn and pending is None \
                        and ts >= stop_at:
                    yield _TxnStart(ts, self._resume)
                    return
                in_txn = False
                if pending is not None:
                    self._apply_gtid(gtids, pending)
                    pending = None
                self._resume = self._pos(log_pos)
                if head.startswith((b"COMMIT", b"ROLLBACK")):
                    yield Commit(ts, self._resume)
                else:
                    # The DDL may change the tables: decoders and the caller's unsigned
                    # flags are rebuilt at the next rows event.
                    tables.clear()
                    sql = text[q:q_end].decode("utf-8", "backslashreplace")
                    yield QueryChange(buf[db_at:db_at + db_len].decode("utf-8", "replace"),
                                      sql, ts, self._resume)
            elif etype == E.MARIADB_GTID or etype == E.GTID:
                if stop_at is not None and ts >= stop_at:
                    yield _TxnStart(ts, self._resume)
                    return
                body = pos + 19
                if etype == E.MARIADB_GTID:
                    seq, domain = _MARIADB_GTID(buf, body)
                    pending = ("mariadb", domain, _srv, seq)
                else:
                    sid = str(uuidlib.UUID(bytes=bytes(buf[body + 1:body + 17])))
                    pending = ("mysql", sid, _U64(buf, body + 17)[0])
            elif etype == E.ROTATE:
                body = pos + 19
                name = buf[body + 8:pos + size - crc].decode("utf-8", "replace")
                if name != self._file:
                    self._file = name
                    self._resume = self._pos(_U64(buf, body)[0])
                    if seen_start:
                        yield Rotate(name, self._resume)
                seen_start = True
            elif etype in _HEARTBEATS:
                yield Heartbeat(self._resume, time.time())
            elif etype == E.FORMAT_DESCRIPTION:
                fde = E.parse_format_description(buf, pos + 19, pos + size)
                crc = 4 if declared_crc and fde.checksum else 0
                tid_len = 4 if fde.post_header_len(E.TABLE_MAP, 8) == 6 else 6
                query_ph = fde.post_header_len(E.QUERY, 13)
                for t in rows_ph:
                    rows_ph[t] = fde.post_header_len(t, 10 if _ROWS[t][1] else 8)
            elif etype == E.MARIADB_GTID_LIST:
                if gtids.empty:  # the state at the head of the file we started from
                    for d, srv, seq in E.parse_mariadb_gtid_list(buf, pos + 19):
                        gtids.add_mariadb(d, srv, seq)
                    self._resume = self._pos(self._resume.binlog_pos)
            elif etype == E.PREVIOUS_GTIDS:
                if gtids.empty:
                    for sid, lo, hi in E.parse_previous_gtids(buf, pos + 19):
                        gtids._add_range(sid, lo, hi)
                    self._resume = self._pos(self._resume.binlog_pos)
            elif etype in _UNSUPPORTED:
                raise BINLOG_DECODE(f"the event at {self._file}:{log_pos}",
                                    _UNSUPPORTED[etype])

    def _uncompress(self, buf: bytes, start: int, end: int, entry: list[Any] | None) -> bytes:
        try:
            return E.mariadb_uncompress(buf, start, end)
        except ValueError as exc:
            what = "the statement" if entry is None else f"`{entry[1]}`.`{entry[2]}`"
            raise BINLOG_DECODE(what, f"a compressed event at {self._file} does not "
                                      f"uncompress: {exc}") from None

    def _apply_gtid(self, gtids: GtidSet, g: tuple[Any, ...]) -> None:
        if g[0] == "mariadb":
            gtids.add_mariadb(g[1], g[2], g[3])
        else:
            gtids.add_mysql(g[1], g[2])

    def _decoder(self, info: TableMapInfo, schema: str, table: str) -> RowDecoder:
        return RowDecoder(info, self.unsigned_of(schema, table))


# --- start_time ----------------------------------------------------------------------------


def _binary_logs(cfg: ConnConfig, connect_timeout: float) -> list[str]:
    conn = pymysql.connect(**conn_settings(cfg, connect_timeout, 30.0))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            return [str(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()


def _file_created(cfg: ConnConfig, server_id: int, name: str, connect_timeout: float,
                  flavor: str) -> int:
    """The timestamp of a binlog file's format description event (its creation)."""
    source = NetworkEventSource(conn_settings(cfg, connect_timeout, 30.0), server_id,
                                flavor=flavor, binlog_name=name, binlog_pos=4,
                                blocking=False)
    try:
        for buf, pos in source.events():
            ts, etype, *_ = _HEADER(buf, pos)
            if etype == E.FORMAT_DESCRIPTION:
                return int(ts)
    finally:
        source.close()
    return 0


def find_start_by_time(cfg: ConnConfig, ts: int, *, server_id: int,
                       flavor: str | None = None,
                       connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> BinlogPosition:
    """The resume point before the first transaction (or statement) whose first event is at
    or after `ts` (epoch seconds), with the GTID set executed there. Files are picked by
    the time they were created (their first event), newest first; if `ts` is older than
    every file the oldest one is scanned. BINLOG_START_TIME when nothing is that recent.
    Blocking: run in a thread. `server_id` must be unique among the source's replicas."""
    try:
        if flavor is None:
            flavor = detect_flavor(cfg, connect_timeout)
        names = _binary_logs(cfg, connect_timeout)
        if not names:
            raise BINLOG_START_TIME(ts, cause="the source has no binary logs")
        first = names[0]
        for name in reversed(names):
            if _file_created(cfg, server_id, name, connect_timeout, flavor) <= ts:
                first = name
                break
    except DMError:
        raise
    except (pymysql.MySQLError, OSError, ConnectionLost) as exc:
        raise translate_error(exc, cfg, "list") from None
    reader = BinlogReader(cfg, server_id, Start(first, 4), flavor=flavor, blocking=False,
                          want_table=lambda s, t: False, connect_timeout=connect_timeout)
    reader._stop_at_time = ts
    with reader:
        for change in reader._iterate():
            if isinstance(change, _TxnStart):
                return change.pos
    raise BINLOG_START_TIME(ts)
