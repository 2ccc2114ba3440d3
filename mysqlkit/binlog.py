"""Reading a source's binlog for incremental replication (synchronous: run it in a thread).

python-mysql-replication does the connection, the replica registration and the event
framing (rotate, GTID, table map, query events); row images are decoded by our own
`mysqlkit.rowcodec` into SQL literal text, and only for the tables the caller wants.

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
import re
import struct
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import pymysql
import pymysql.connections
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    FormatDescriptionEvent,
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    MariadbGtidListEvent,
    PreviousGtidsEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from events.errors import BINLOG_DECODE, BINLOG_PURGED, BINLOG_READ, BINLOG_START_TIME, DMError
from mysqlkit.dump import BinlogPosition
from mysqlkit.rowcodec import Row, RowDecoder, TableMapInfo
from mysqlkit.upstream import DEFAULT_CONNECT_TIMEOUT, ConnConfig, _ssl_context

__all__ = [
    "BinlogReader",
    "Change",
    "Commit",
    "GtidSet",
    "Heartbeat",
    "QueryChange",
    "Rotate",
    "RowsChange",
    "Start",
    "find_start_by_time",
]

log = logging.getLogger(__name__)


class _DropRowMetadataAdvice(logging.Filter):
    """pymysqlreplication warns on every connect unless binlog_row_metadata=FULL: we decode
    rows ourselves and take column names and signedness from the caller's schema tracker,
    so the advice is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "BINLOG_ROW_METADATA" not in record.getMessage()


logging.getLogger("pymysqlreplication").addFilter(_DropRowMetadataAdvice())

# The event header as pymysql hands the packet over: the OK byte, then 19 header bytes.
_BODY_OFFSET = 20
_ER_MASTER_FATAL_READING_BINLOG = 1236
# 1236 messages that mean "the binlog you ask for is gone" (MariaDB and MySQL wordings).
_PURGED_RE = re.compile(r"could not find first log file|could not find gtid state|"
                        r"purged|no longer available|binary log.*not found",
                        re.IGNORECASE)


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


# --- GTID sets -----------------------------------------------------------------------------


@dataclass
class GtidSet:
    """An executed GTID set. MariaDB: the latest (server, seq) per domain, "d-s-n,...";
    MySQL: intervals per source uuid, "uuid:1-5:7,..." (intervals merged as GTIDs are
    added)."""

    flavor: str
    mariadb: dict[int, tuple[int, int]] = field(default_factory=dict)
    mysql: dict[str, list[list[int]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, flavor: str) -> GtidSet:
        s = cls(flavor)
        for part in (p.strip() for p in text.replace("\n", "").split(",")):
            if not part:
                continue
            if flavor == "mariadb":
                d, srv, seq = (int(x) for x in part.split("-"))
                s.mariadb[d] = (srv, seq)
            else:
                sid, *ranges = part.split(":")
                for r in ranges:
                    lo, _, hi = r.partition("-")
                    s._add_range(sid.lower(), int(lo), int(hi or lo))
        return s

    @property
    def empty(self) -> bool:
        return not self.mariadb and not self.mysql

    def add_mariadb(self, domain: int, server: int, seq: int) -> None:
        self.mariadb[domain] = (server, seq)

    def add_mysql(self, sid: str, gno: int) -> None:
        self._add_range(sid, gno, gno)

    def _add_range(self, sid: str, lo: int, hi: int) -> None:
        ivs = self.mysql.setdefault(sid, [])
        if ivs and ivs[-1][1] + 1 == lo:  # the common case: the next gno of the last range
            ivs[-1][1] = max(ivs[-1][1], hi)
            return
        ivs.append([lo, hi])
        ivs.sort()
        merged: list[list[int]] = []
        for a, b in ivs:
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.mysql[sid] = merged

    def __str__(self) -> str:
        if self.flavor == "mariadb":
            return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.mariadb.items()))
        return ",".join(
            sid + "".join(f":{a}" if a == b else f":{a}-{b}" for a, b in ivs)
            for sid, ivs in sorted(self.mysql.items()))


# --- the stream connection -----------------------------------------------------------------


class _ConnectionLost(Exception):
    """The replication connection broke (or timed out). Not a pymysql.OperationalError on
    purpose: pymysqlreplication silently reconnects on those (2006/2013), from its own
    idea of the position; we want the caller to resume from its checkpoint instead."""


class _StreamConnection(pymysql.connections.Connection):
    def _read_packet(self, packet_type: Any = pymysql.connections.MysqlPacket) -> Any:
        try:
            return super()._read_packet(packet_type)
        except pymysql.OperationalError as exc:
            if exc.args and exc.args[0] in (2006, 2013):
                raise _ConnectionLost(str(exc.args[1] if len(exc.args) > 1 else exc)) from None
            raise


def _conn_settings(cfg: ConnConfig, connect_timeout: float,
                   read_timeout: float) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "host": cfg.host, "port": cfg.port, "user": cfg.user, "password": cfg.password,
        "connect_timeout": connect_timeout, "read_timeout": read_timeout,
        "charset": "utf8mb4",
    }
    ctx = _ssl_context(cfg)
    if ctx is not None:
        settings["ssl"] = ctx
    return settings


def _translate(exc: BaseException, cfg: ConnConfig, what: str) -> DMError:
    text = str(exc.args[1]) if isinstance(exc, pymysql.MySQLError) and len(exc.args) > 1 \
        else (str(exc) or type(exc).__name__)
    if cfg.password:
        text = text.replace(cfg.password, "******")
    code = exc.args[0] if isinstance(exc, pymysql.MySQLError) and exc.args else None
    if code == _ER_MASTER_FATAL_READING_BINLOG and _PURGED_RE.search(text):
        return BINLOG_PURGED(what, cause=text)
    return BINLOG_READ(text, cause=text)


def _detect_flavor(cfg: ConnConfig, connect_timeout: float) -> str:
    conn = pymysql.connect(**_conn_settings(cfg, connect_timeout, 30.0))
    try:
        info = conn.get_server_info()
    finally:
        conn.close()
    return "mariadb" if "mariadb" in str(info).lower() else "mysql"


# --- the reader ----------------------------------------------------------------------------

_ROWS_KIND = {WriteRowsEvent: "insert", DeleteRowsEvent: "delete", UpdateRowsEvent: "update"}


def _all_tables(schema: str, table: str) -> bool:
    return True


def _no_unsigned(schema: str, table: str) -> Sequence[bool] | None:
    return None


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
    """

    _ONLY_EVENTS: ClassVar[list[type]] = [
        WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, TableMapEvent, QueryEvent,
        XidEvent, RotateEvent, FormatDescriptionEvent, GtidEvent, MariadbGtidEvent,
        MariadbGtidListEvent, PreviousGtidsEvent, HeartbeatLogEvent,
    ]

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
        self._stream: BinLogStreamReader | None = None
        self._closed = False
        self._file = start.binlog_name
        self._gtids = GtidSet("mariadb")
        self._resume = BinlogPosition(start.binlog_name, start.binlog_pos, start.gtid)
        # Set by find_start_by_time: yield a _TxnStart at the first transaction whose first
        # event is at or after this time, then stop.
        self._stop_at_time: int | None = None

    @property
    def position(self) -> BinlogPosition:
        """The last resume point seen (the start until the first Commit/QueryChange)."""
        return self._resume

    def close(self) -> None:
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    def __enter__(self) -> BinlogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Change]:
        # _TxnStart only comes out when find_start_by_time set _stop_at_time.
        return cast(Iterator[Change], self._iterate())

    def _iterate(self) -> Iterator[Change | _TxnStart]:
        what = (f"GTID set '{self.start.gtid}'" if self.gtid_mode
                else f"'{self.start.binlog_name}'")
        try:
            yield from self._run()
        except DMError:
            raise
        except (pymysql.MySQLError, OSError, _ConnectionLost, struct.error) as exc:
            if not self._closed:
                raise _translate(exc, self.cfg, what) from None
        except Exception as exc:  # a framing error inside pymysqlreplication
            if not self._closed:
                raise BINLOG_READ(f"{type(exc).__name__}: {exc}") from None
        finally:
            self.close()

    def _open(self) -> BinLogStreamReader:
        start = self.start
        if self.flavor is None:
            self.flavor = _detect_flavor(self.cfg, self.connect_timeout)
        self._gtids = GtidSet.parse(start.gtid, self.flavor)
        if start.start_time is not None:
            found = find_start_by_time(self.cfg, start.start_time, server_id=self.server_id,
                                       flavor=self.flavor)
            start = Start.at(found)
            self._gtids = GtidSet.parse(found.gtid, self.flavor)
            self._resume = found
            self._file = found.binlog_name
        kwargs: dict[str, Any] = {}
        if self.gtid_mode and self.start.start_time is None:
            # A start_time was resolved to a position (exact, its GTID set known) above.
            if not start.gtid:
                raise BINLOG_READ("GTID mode needs a GTID set to start from")
            # MariaDB: @slave_connect_state; MySQL: COM_BINLOG_DUMP_GTID.
            kwargs.update(auto_position=start.gtid, is_mariadb=self.flavor == "mariadb")
        else:
            if not start.binlog_name:
                raise BINLOG_READ("no binlog position to start from")
            # is_mariadb stays False: with it pymysqlreplication ignores log_file/log_pos.
            kwargs.update(log_file=start.binlog_name, log_pos=start.binlog_pos,
                          resume_stream=True)
        stream = BinLogStreamReader(
            connection_settings=_conn_settings(self.cfg, self.connect_timeout,
                                               self.read_timeout),
            server_id=self.server_id,
            blocking=self.blocking,
            only_events=self._ONLY_EVENTS,
            slave_heartbeat=self.heartbeat if self.blocking else None,
            pymysql_wrapper=_StreamConnection,
            enable_logging=False,
            **kwargs,
        )
        self._stream = stream
        return stream

    def _pos(self, log_pos: int) -> BinlogPosition:
        return BinlogPosition(self._file, log_pos, str(self._gtids))

    def _run(self) -> Iterator[Change | _TxnStart]:
        stream = self._open()
        gtids = self._gtids
        # table_id -> (raw table map body, schema, table, wanted, decoder or None)
        tables: dict[int, tuple[bytes, str, str, bool, RowDecoder | None]] = {}
        pending: tuple[Any, ...] | None = None  # the GTID of the running transaction
        in_txn = False
        stop_at = self._stop_at_time
        seen_start = False  # find_start_by_time: the first transaction start was seen
        for ev in stream:
            cls = ev.__class__
            kind = _ROWS_KIND.get(cls)
            if kind is not None:
                entry = tables.get(ev.table_id)
                if stop_at is not None and not in_txn and pending is None:
                    in_txn = True
                    if ev.timestamp >= stop_at:
                        yield _TxnStart(ev.timestamp, self._resume)
                        return
                if entry is None or not entry[3]:
                    continue
                raw, schema, table, _, dec = entry
                if dec is None:
                    dec = self._decoder(stream, ev.table_id, schema, table)
                    tables[ev.table_id] = (raw, schema, table, True, dec)
                yield self._rows(ev, kind, dec, schema, table)
            elif cls is TableMapEvent:
                w = ev.packet
                raw = bytes(w.packet._data[_BODY_OFFSET:_BODY_OFFSET + ev.event_size])
                old = tables.get(ev.table_id)
                if old is None or old[0] != raw:
                    tables[ev.table_id] = (raw, ev.schema, ev.table,
                                           bool(self.want_table(ev.schema, ev.table)), None)
            elif cls is XidEvent:
                in_txn = False
                if pending is not None:
                    self._apply_gtid(gtids, pending)
                    pending = None
                self._resume = self._pos(ev.packet.log_pos)
                yield Commit(ev.timestamp, self._resume)
            elif cls is QueryEvent:
                sql = ev.query
                head = sql[:12].lstrip().upper()
                if head.startswith("BEGIN"):
                    if stop_at is not None and not in_txn and pending is None:
                        if ev.timestamp >= stop_at:
                            yield _TxnStart(ev.timestamp, self._resume)
                            return
                    in_txn = True
                    continue
                if head.startswith(("SAVEPOINT", "ROLLBACK TO", "XA ")):
                    continue
                if stop_at is not None and not in_txn and pending is None \
                        and ev.timestamp >= stop_at:
                    yield _TxnStart(ev.timestamp, self._resume)
                    return
                in_txn = False
                if pending is not None:
                    self._apply_gtid(gtids, pending)
                    pending = None
                self._resume = self._pos(ev.packet.log_pos)
                if head.startswith(("COMMIT", "ROLLBACK")):
                    yield Commit(ev.timestamp, self._resume)
                else:
                    # The DDL may change the tables: decoders and the caller's unsigned
                    # flags are rebuilt at the next rows event.
                    tables.clear()
                    yield QueryChange(ev.schema.decode("utf-8", "replace"), sql,
                                      ev.timestamp, self._resume)
            elif cls is MariadbGtidEvent or cls is GtidEvent:
                if stop_at is not None and ev.timestamp >= stop_at:
                    yield _TxnStart(ev.timestamp, self._resume)
                    return
                if cls is MariadbGtidEvent:
                    pending = ("mariadb", ev.domain_id, ev.server_id, ev.gtid_seq_no)
                else:
                    pending = ("mysql", str(uuidlib.UUID(bytes=ev.sid)), ev.gno)
            elif cls is RotateEvent:
                name = ev.next_binlog
                if name != self._file:
                    self._file = name
                    self._resume = self._pos(ev.position)
                    if seen_start:
                        yield Rotate(name, self._resume)
                seen_start = True
            elif cls is HeartbeatLogEvent:
                yield Heartbeat(self._resume, time.time())
            elif cls is MariadbGtidListEvent:
                if gtids.empty:  # the state at the head of the file we started from
                    for g in ev.gtid_list:
                        gtids.add_mariadb(g.domain_id, g.server_id, g.gtid_seq_no)
                    self._resume = self._pos(self._resume.binlog_pos)
            elif cls is PreviousGtidsEvent:
                if gtids.empty:
                    _parse_previous_gtids(ev, gtids)
                    self._resume = self._pos(self._resume.binlog_pos)

    def _apply_gtid(self, gtids: GtidSet, g: tuple[Any, ...]) -> None:
        if g[0] == "mariadb":
            gtids.add_mariadb(g[1], g[2], g[3])
        else:
            gtids.add_mysql(g[1], g[2])

    def _decoder(self, stream: BinLogStreamReader, table_id: int, schema: str,
                 table: str) -> RowDecoder:
        info = TableMapInfo.from_table(stream.table_map[table_id])
        unsigned = self.unsigned_of(schema, table)
        return RowDecoder(info, unsigned)

    def _rows(self, ev: Any, kind: str, dec: RowDecoder, schema: str,
              table: str) -> RowsChange:
        pkt = ev.packet.packet
        buf = pkt._data
        start, end = pkt._position, _BODY_OFFSET + ev.event_size
        full = dec.full_bitmap
        if ev.number_of_columns != dec.column_count:
            raise BINLOG_DECODE(f"`{schema}`.`{table}`",
                                f"{ev.number_of_columns} columns in the rows event, "
                                f"{dec.column_count} in its table map")
        if ev.columns_present_bitmap != full or (
                kind == "update" and ev.columns_present_bitmap2 != full):
            raise BINLOG_DECODE(f"`{schema}`.`{table}`",
                                "the row image is not complete: binlog_row_image must be FULL")
        if kind == "update":
            return RowsChange(schema, table, kind, [], dec.updates(buf, start, end),
                              dec.column_count, ev.timestamp)
        return RowsChange(schema, table, kind, dec.rows(buf, start, end), [],
                          dec.column_count, ev.timestamp)


def _parse_previous_gtids(ev: Any, gtids: GtidSet) -> None:
    """MySQL's Previous_gtids event from its raw body (pymysqlreplication only keeps a
    display string): n_sids, then per sid: uuid, n_intervals, [start, end) pairs."""
    buf = ev.packet.packet._data
    p = _BODY_OFFSET
    (n_sid,) = struct.unpack_from("<Q", buf, p)
    p += 8
    for _ in range(n_sid):
        sid = str(uuidlib.UUID(bytes=bytes(buf[p:p + 16])))
        (n_iv,) = struct.unpack_from("<Q", buf, p + 16)
        p += 24
        for _ in range(n_iv):
            lo, hi = struct.unpack_from("<QQ", buf, p)
            p += 16
            gtids._add_range(sid, lo, hi - 1)


# --- start_time ----------------------------------------------------------------------------


def _binary_logs(cfg: ConnConfig, connect_timeout: float) -> list[str]:
    conn = pymysql.connect(**_conn_settings(cfg, connect_timeout, 30.0))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            return [str(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()


def _file_created(cfg: ConnConfig, server_id: int, name: str, connect_timeout: float) -> int:
    """The timestamp of a binlog file's format description event (its creation)."""
    stream = BinLogStreamReader(
        connection_settings=_conn_settings(cfg, connect_timeout, 30.0), server_id=server_id,
        blocking=False, only_events=[FormatDescriptionEvent], log_file=name, log_pos=4,
        resume_stream=True, pymysql_wrapper=_StreamConnection, enable_logging=False)
    try:
        for ev in stream:
            return int(ev.timestamp)
    finally:
        stream.close()
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
        names = _binary_logs(cfg, connect_timeout)
        if not names:
            raise BINLOG_START_TIME(ts, cause="the source has no binary logs")
        first = names[0]
        for name in reversed(names):
            if _file_created(cfg, server_id, name, connect_timeout) <= ts:
                first = name
                break
    except DMError:
        raise
    except (pymysql.MySQLError, OSError, _ConnectionLost) as exc:
        raise _translate(exc, cfg, "list") from None
    reader = BinlogReader(cfg, server_id, Start(first, 4), flavor=flavor, blocking=False,
                          want_table=lambda s, t: False, connect_timeout=connect_timeout)
    reader._stop_at_time = ts
    with reader:
        for change in reader._iterate():
            if isinstance(change, _TxnStart):
                return change.pos
    raise BINLOG_START_TIME(ts)
