"""`RelayWriter`: pulls a source's binlog into the relay directory (see the package doc),
and recovers after a crash from the files themselves."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import IO, Any

import pymysql

from errors import BINLOG_READ, RELAY_INVALID, DMError
from mysqlkit.binlog import events as E
from mysqlkit.binlog.connection import conn_settings, translate_error
from mysqlkit.binlog.stream import ConnectionLost, NetworkEventSource
from mysqlkit.position import BinlogPosition, GtidSet
from mysqlkit.relay.files import (
    ARTIFICIAL_F,
    RelayMeta,
    make_event,
    read_meta,
    relay_files,
    with_log_pos,
    write_meta,
)
from mysqlkit.upstream import DEFAULT_CONNECT_TIMEOUT, ConnConfig

log = logging.getLogger(__name__)

_FLUSH_META_S = 0.5


class _TxnTracker:
    """The GTID set at transaction boundaries, as BinlogReader computes it: a transaction's
    GTID counts once its XID, COMMIT or DDL statement is seen."""

    def __init__(self, gtids: GtidSet) -> None:
        self.gtids = gtids
        self.pending: tuple[Any, ...] | None = None
        self.boundary = True  # the last event ended a transaction (or none began)

    def feed(self, buf: bytes, pos: int, etype: int, server_id: int) -> bool:
        """Returns True when this event ends a transaction."""
        body = pos + E.HEADER_LEN
        if etype == E.MARIADB_GTID:
            seq = int.from_bytes(buf[body:body + 8], "little")
            domain = int.from_bytes(buf[body + 8:body + 12], "little")
            self.pending = ("mariadb", domain, server_id, seq)
            self.boundary = False
        elif etype == E.GTID:
            import uuid as uuidlib
            sid = str(uuidlib.UUID(bytes=bytes(buf[body + 1:body + 17])))
            self.pending = ("mysql", sid, int.from_bytes(buf[body + 17:body + 25], "little"))
            self.boundary = False
        elif etype == E.XID:
            return self._commit()
        elif etype in E.QUERY_EVENTS:
            status_len = int.from_bytes(buf[body + 11:body + 13], "little")
            q = body + 13 + status_len + buf[body + 8] + 1
            if etype == E.QUERY:
                head = buf[q:q + 12].lstrip().upper()
            else:  # log_bin_compress; zlib ignores the checksum after the stream
                size = int.from_bytes(buf[pos + 9:pos + 13], "little")
                head = E.mariadb_uncompress(buf, q, pos + size)[:12].lstrip().upper()
            if head.startswith(b"BEGIN"):
                self.boundary = False
            elif not head.startswith((b"SAVEPOINT", b"ROLLBACK TO", b"XA ")):
                return self._commit()
        elif etype in (E.TABLE_MAP, *E.ROWS_EVENTS):
            self.boundary = False
        return False

    def _commit(self) -> bool:
        g = self.pending
        if g is not None:
            if g[0] == "mariadb":
                self.gtids.add_mariadb(g[1], g[2], g[3])
            else:
                self.gtids.add_mysql(g[1], g[2])
            self.pending = None
        self.boundary = True
        return True


def _scan(path: Path, start: int, tracker: _TxnTracker | None) -> int:
    """Walks the complete events of a relay file from `start`; returns the end of the last
    complete one (the file's valid length)."""
    data = path.read_bytes()
    if len(data) < 4 or data[:4] != E.MAGIC:
        return 0
    p = max(start, 4)
    n = len(data)
    while p + E.HEADER_LEN <= n:
        _ts, etype, server_id, size, _lp, _fl = E.HEADER.unpack_from(data, p)
        if size < E.HEADER_LEN or p + size > n:
            break
        if tracker is not None:
            tracker.feed(data, p, etype, server_id)
        p += size
    return p


class RelayWriter:
    """Pulls the upstream binlog into `relay_dir` (see the module doc). `start` is a
    position (with its GTID set, if known) or, as a string, a GTID set; it only counts
    when the directory has no relay yet: otherwise the writer resumes where the files end.

    `run()` blocks until `close()` (from another thread) and raises a DMError when the
    source fails (BINLOG_PURGED, BINLOG_READ: call run() again to resume). `status()`:
    (relay_binlog_name, pos, relay_binlog_gtid) of what is written and flushed."""

    def __init__(self, conn: ConnConfig, server_id: int, relay_dir: Path,
                 start: BinlogPosition | str, flavor: str, *, heartbeat: float = 1.0,
                 read_timeout: float | None = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        if flavor not in ("mariadb", "mysql"):
            raise ValueError(f"flavor must be 'mariadb' or 'mysql', not {flavor!r}")
        self.cfg = conn
        self.server_id = server_id
        self.relay_dir = Path(relay_dir)
        self.start = start
        self.flavor = flavor
        self.heartbeat = heartbeat
        self.read_timeout = read_timeout if read_timeout is not None else max(
            3 * heartbeat, 10.0)
        self.connect_timeout = connect_timeout
        self._closed = threading.Event()
        self._source: NetworkEventSource | None = None
        self._lock = threading.Lock()
        self._status = ("", 0, "")
        # Writing state.
        self._file = ""
        self._fh: IO[bytes] | None = None
        self._size = 0
        self._crc = False
        self._tracker = _TxnTracker(GtidSet(flavor))
        self._meta_at = 0.0
        self._origin = ("", 4, "")  # see RelayMeta

    def status(self) -> tuple[str, int, str]:
        with self._lock:
            return self._status

    def close(self) -> None:
        self._closed.set()
        source = self._source
        if source is not None:
            source.close()

    # --- recovery -------------------------------------------------------------------------

    def _recover(self) -> tuple[str, int, str | None]:
        """(file, pos, gtid to dump from or None): from the files if there are any, else
        from `start`. Truncates a partially written last event."""
        self.relay_dir.mkdir(parents=True, exist_ok=True)
        meta = read_meta(self.relay_dir)
        files = relay_files(self.relay_dir)
        if meta is None or not files:
            for name in files:  # files without meta: a first start that died early
                (self.relay_dir / name).unlink()
            start = self.start
            if isinstance(start, str):
                self._tracker = _TxnTracker(GtidSet.parse(start, self.flavor))
                self._origin = ("", 4, start)
                return "", 4, start
            self._tracker = _TxnTracker(GtidSet.parse(start.gtid, self.flavor))
            self._origin = (start.binlog_name, 4, start.gtid)
            return start.binlog_name, start.binlog_pos, None
        if meta.flavor != self.flavor:
            raise RELAY_INVALID(str(self.relay_dir),
                                f"written from a {meta.flavor} source, not {self.flavor}")
        self._tracker = _TxnTracker(GtidSet.parse(meta.binlog_gtid, self.flavor))
        self._origin = (meta.origin_name or files[0], meta.origin_pos, meta.origin_gtid)
        later = [n for n in files if n >= meta.binlog_name]
        if not later:
            raise RELAY_INVALID(str(self.relay_dir), f"{meta.binlog_name} is missing")
        pos = meta.binlog_pos
        for i, name in enumerate(later):
            path = self.relay_dir / name
            end = _scan(path, pos if i == 0 else 4, self._tracker)
            if i < len(later) - 1 and end != path.stat().st_size:
                raise RELAY_INVALID(name, f"a broken event at {end}")
            pos = 4
        last = self.relay_dir / later[-1]
        if end < 4:  # created, magic not yet written
            last.write_bytes(E.MAGIC)
            end = 4
        elif end < last.stat().st_size:
            log.info("relay %s: truncating %s to %d (a partial event)", self.relay_dir,
                     last.name, end)
            with open(last, "r+b") as fh:
                fh.truncate(end)
        return later[-1], end, None

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        name, pos, gtid = self._recover()
        if name:
            self._open_file(name)
            self._set_status()
        settings = conn_settings(self.cfg, self.connect_timeout, self.read_timeout)
        what = f"GTID set '{gtid}'" if gtid is not None else f"'{name}'"
        try:
            if gtid is not None:
                source = NetworkEventSource(settings, self.server_id, flavor=self.flavor,
                                            gtid=gtid, heartbeat=self.heartbeat,
                                            read_timeout=self.read_timeout, annotate=True)
            else:
                source = NetworkEventSource(settings, self.server_id, flavor=self.flavor,
                                            binlog_name=name, binlog_pos=pos,
                                            heartbeat=self.heartbeat,
                                            read_timeout=self.read_timeout, annotate=True)
            self._source = source
            if self._closed.is_set():
                return
            self._pump(source)
        except DMError:
            raise
        except (pymysql.MySQLError, OSError, ConnectionLost) as exc:
            if not self._closed.is_set():
                raise translate_error(exc, self.cfg, what) from None
        except Exception as exc:  # a malformed event
            if not self._closed.is_set():
                raise BINLOG_READ(f"{type(exc).__name__}: {exc}") from None
        finally:
            source_, self._source = self._source, None
            if source_ is not None:
                source_.close()
            with contextlib.suppress(OSError):
                self._flush(force_meta=True)
            self._close_file()

    def _pump(self, source: NetworkEventSource) -> None:
        tracker = self._tracker
        header = E.HEADER.unpack_from
        for buf, pos in source.events(mark_refill=True):
            if pos < 0:  # the received bytes are used up: make them visible
                self._flush()
                continue
            _ts, etype, server_id, size, log_pos, flags = header(buf, pos)
            if flags & ARTIFICIAL_F or etype in (E.HEARTBEAT, E.HEARTBEAT_V2):
                if etype == E.ROTATE:
                    crc = 4 if source.crc_len else 0
                    nxt = buf[pos + 27:pos + size - crc].decode("utf-8", "replace")
                    if nxt != self._file:
                        self._open_file(nxt)
                else:  # idle (heartbeat), or a fake GTID_LIST before the first event
                    self._flush()
                continue
            if self._fh is None:
                raise BINLOG_READ("the source sent events before naming the binlog file")
            if etype == E.FORMAT_DESCRIPTION:
                self._crc = E.parse_format_description(buf, pos + 19, pos + size).checksum
                if self._size > 4:
                    continue  # resuming mid-file: the file has its own already
                event = bytes(buf[pos:pos + size])
                if log_pos == 0:  # sent for a mid-file start: give it its real position
                    event = with_log_pos(event, 4 + size, self._crc)
                self._append(event)
                continue
            at = log_pos - size
            if at != self._size:
                self._fill(at)
            self._fh.write(buf[pos:pos + size])
            self._size = log_pos
            if tracker.feed(buf, pos, etype, server_id) and \
                    time.monotonic() - self._meta_at > _FLUSH_META_S:
                self._flush()
            if self._closed.is_set():
                return

    def _append(self, event: bytes) -> None:
        assert self._fh is not None
        self._fh.write(event)
        self._size += len(event)

    def _fill(self, at: int) -> None:
        """Fills [size, at) with one IGNORABLE event so that offsets stay upstream's."""
        hole = at - self._size
        if hole < E.HEADER_LEN + (4 if self._crc else 0):
            raise RELAY_INVALID(self._file, f"event at {at} overlaps the data ending at "
                                            f"{self._size}")
        body = bytes(hole - E.HEADER_LEN - (4 if self._crc else 0))
        self._append(make_event(E.IGNORABLE, at, body, crc=self._crc,
                            flags=E.LOG_EVENT_IGNORABLE_F))
        if self._file == self._origin[0]:  # the relay has this file from here on
            self._origin = (self._file, at, self._origin[2])
            self._flush(force_meta=True)  # before any transaction: a boundary

    def _open_file(self, name: str) -> None:
        if self._fh is not None:
            self._close_file()
        path = self.relay_dir / name
        self._fh = open(path, "ab")
        self._file = name
        if not self._origin[0]:  # a GTID start: the source names the first file
            self._origin = (name, 4, self._origin[2])
        self._size = self._fh.tell()
        if self._size == 0:
            self._fh.write(E.MAGIC)
            self._size = 4
        elif self._size >= 4 + E.HEADER_LEN:
            with open(path, "rb") as fh:  # the checksum setting of the file's events
                head = fh.read(4 + E.HEADER_LEN)
                size = E.HEADER.unpack_from(head, 4)[3]
                fh.seek(4)
                fde = fh.read(size)
            self._crc = E.parse_format_description(fde, E.HEADER_LEN, size).checksum
        if self._tracker.boundary:
            self._flush(force_meta=True)

    def _close_file(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.flush()
                os.fsync(fh.fileno())
            fh.close()
            self._set_status()

    def _flush(self, force_meta: bool = False) -> None:
        if self._fh is not None:
            self._fh.flush()
        self._set_status()
        now = time.monotonic()
        if self._tracker.boundary and (force_meta or now - self._meta_at > _FLUSH_META_S):
            if self._fh is not None:
                os.fsync(self._fh.fileno())  # the meta never points past durable data
            write_meta(self.relay_dir, RelayMeta(self.flavor, self._file, self._size,
                                                  str(self._tracker.gtids), *self._origin))
            self._meta_at = now

    def _set_status(self) -> None:
        with self._lock:
            self._status = (self._file, self._size, str(self._tracker.gtids))
