"""Relay log files: a local copy of a source's binlog, written by `RelayWriter` and read
back by `BinlogReader.from_relay` (through `RelayFileSource`), as DM's relay unit does.

Files. One local file per upstream file, with the same name, in the standard binlog file
format: the 4-byte magic and then the events exactly as received (format description
event included, CRC32 trailers kept). Offsets equal the upstream positions: a hole in
what the source sends (the writer started mid-file, a GTID start skipped transactions)
is filled with one IGNORABLE event of the hole's size, so the `log_pos` of every event,
and therefore every resume point, is the same locally and upstream. Artificial events
(fake ROTATE, fake GTID_LIST: flag 0x20) and heartbeats are not written.

`relay.meta` (JSON, replaced atomically) records the writer's flavor, file, position and
GTID set at a transaction boundary. The files are the truth: on restart the writer scans
from the recorded point to the end of the newest file, truncates a partially written last
event and resumes the dump at the end of the data (no gap, no duplicate).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import pymysql

from events.errors import (
    BINLOG_PURGED,
    BINLOG_READ,
    RELAY_INVALID,
    RELAY_PURGE_PROTECTED,
    DMError,
)
from mysqlkit import binlog_events as E
from mysqlkit.binlog import GtidSet, _conn_settings, _translate
from mysqlkit.binlog_stream import ConnectionLost, NetworkEventSource
from mysqlkit.dump import BinlogPosition
from mysqlkit.upstream import DEFAULT_CONNECT_TIMEOUT, ConnConfig

__all__ = [
    "META_NAME",
    "RELAY_INVALID",
    "RELAY_PURGE_PROTECTED",
    "RelayFileSource",
    "RelayMeta",
    "RelayWriter",
    "purge_relay",
    "read_meta",
    "relay_files",
]

log = logging.getLogger(__name__)

# Relay-unit codes (DM's class relay-unit, 30001+). TODO(lead): move to events/errors.py.
META_NAME = "relay.meta"
_ARTIFICIAL_F = 0x20
_NAME_RE = re.compile(r"^[^.][^/]*\.\d+$")  # "mysql-bin.000001"; not relay.meta or temps
_FLUSH_META_S = 0.5
_POLL_S = 0.02
_READ_CHUNK = 1 << 20


@dataclass
class RelayMeta:
    """What the relay has: up to `binlog_pos` of `binlog_name`, GTID set `binlog_gtid`;
    from `origin_pos` of `origin_name` on (before it, in that file, only a filler stands
    for what the writer's first dump skipped), with GTID set `origin_gtid` there ("" when
    the writer was started from a position without one)."""

    flavor: str
    binlog_name: str
    binlog_pos: int
    binlog_gtid: str
    origin_name: str = ""
    origin_pos: int = 4
    origin_gtid: str = ""


def read_meta(relay_dir: Path) -> RelayMeta | None:
    path = Path(relay_dir) / META_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RELAY_INVALID(str(relay_dir), f"unreadable {META_NAME}: {exc}") from None
    return RelayMeta(str(data["flavor"]), str(data["binlog_name"]), int(data["binlog_pos"]),
                     str(data.get("binlog_gtid", "")), str(data.get("origin_name", "")),
                     int(data.get("origin_pos", 4)), str(data.get("origin_gtid", "")))


def _write_meta(relay_dir: Path, meta: RelayMeta) -> None:
    tmp = relay_dir / f".{META_NAME}.tmp"
    with open(tmp, "w") as fh:
        json.dump(asdict(meta), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, relay_dir / META_NAME)


def relay_files(relay_dir: Path) -> list[str]:
    """The relay files in binlog order (names share a base and a zero-padded number)."""
    try:
        names = os.listdir(relay_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if _NAME_RE.match(n))


def _event(etype: int, log_pos: int, body: bytes, *, crc: bool, ts: int = 0,
           server_id: int = 0, flags: int = 0) -> bytes:
    size = E.HEADER_LEN + len(body) + (4 if crc else 0)
    data = E.HEADER.pack(ts, etype, server_id, size, log_pos, flags) + body
    return data + zlib.crc32(data).to_bytes(4, "little") if crc else data


def _with_log_pos(event: bytes, log_pos: int, crc: bool) -> bytes:
    """The event with its header's log_pos replaced (and its checksum recomputed)."""
    data = event[:13] + log_pos.to_bytes(4, "little") + event[17:len(event) - (4 if crc else 0)]
    return data + zlib.crc32(data).to_bytes(4, "little") if crc else data


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
        settings = _conn_settings(self.cfg, self.connect_timeout, self.read_timeout)
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
                raise _translate(exc, self.cfg, what) from None
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
            if flags & _ARTIFICIAL_F or etype in (E.HEARTBEAT, E.HEARTBEAT_V2):
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
                    event = _with_log_pos(event, 4 + size, self._crc)
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
        self._append(_event(E.IGNORABLE, at, body, crc=self._crc,
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
            _write_meta(self.relay_dir, RelayMeta(self.flavor, self._file, self._size,
                                                  str(self._tracker.gtids), *self._origin))
            self._meta_at = now

    def _set_status(self) -> None:
        with self._lock:
            self._status = (self._file, self._size, str(self._tracker.gtids))


# --- reading ---------------------------------------------------------------------------------


def _contains(have: GtidSet, head: GtidSet) -> bool:
    """Whether every transaction of `head` is in `have`."""
    if have.flavor == "mariadb":
        return all(d in have.mariadb and have.mariadb[d][1] >= seq
                   for d, (_srv, seq) in head.mariadb.items())
    for sid, ivs in head.mysql.items():
        for lo, hi in ivs:
            if not any(a <= lo and hi <= b for a, b in have.mysql.get(sid, [])):
                return False
    return True


def _head_gtids(path: Path, flavor: str) -> GtidSet | None:
    """The GTID state at the head of a relay file (its GTID_LIST / PREVIOUS_GTIDS)."""
    with open(path, "rb") as fh:
        data = fh.read(64 * 1024)
    p = 4
    while p + E.HEADER_LEN <= len(data):
        _ts, etype, _srv, size, _lp, _fl = E.HEADER.unpack_from(data, p)
        if size < E.HEADER_LEN or p + size > len(data):
            return None
        out = GtidSet(flavor)
        if etype == E.MARIADB_GTID_LIST:
            for d, srv, seq in E.parse_mariadb_gtid_list(data, p + E.HEADER_LEN):
                out.add_mariadb(d, srv, seq)
            return out
        if etype == E.PREVIOUS_GTIDS:
            for sid, lo, hi in E.parse_previous_gtids(data, p + E.HEADER_LEN):
                out._add_range(sid, lo, hi)
            return out
        if etype in (E.MARIADB_GTID, E.GTID, E.QUERY, E.TABLE_MAP):
            return None
        p += size
    return None


class RelayFileSource:
    """Raw events from relay files, as `NetworkEventSource` gives them from the source: a
    fake ROTATE naming the file and start position, the file's format description event,
    then the events from the position on, following the files as the writer appends
    (polling for growth and for the next file) and a HEARTBEAT after `heartbeat` idle
    seconds; `blocking=False` ends at the end of the newest file.

    GTID mode (`gtid` set): starts in the newest file whose head GTID state the set
    contains and skips the transactions the set has (as the source does for a replica
    connecting with its GTID state), single-stream sets only."""

    def __init__(self, relay_dir: Path, binlog_name: str = "", binlog_pos: int = 4, *,
                 gtid: GtidSet | None = None, blocking: bool = True,
                 heartbeat: float = 1.0) -> None:
        self.relay_dir = Path(relay_dir)
        self.blocking = blocking
        self.heartbeat = heartbeat
        self._gtid = gtid
        self._closed = False
        files = relay_files(self.relay_dir)
        meta = read_meta(self.relay_dir)
        origin = (meta.origin_name, meta.origin_pos, meta.origin_gtid) if meta else ("", 4, "")
        if gtid is not None:
            binlog_name, binlog_pos = "", 4
            for name in reversed(files):
                head = _head_gtids(self.relay_dir / name, gtid.flavor)
                if head is not None and _contains(gtid, head):
                    binlog_name = name
                    break
            # Before its origin the first file has a hole: only a set that contains the
            # origin's may start there.
            if binlog_name and binlog_name == origin[0] and origin[1] > 4 and not (
                    origin[2] and _contains(gtid, GtidSet.parse(origin[2], gtid.flavor))):
                binlog_name = ""
            if not binlog_name:
                raise BINLOG_PURGED(f"GTID set '{gtid}'",
                                    cause=f"the relay log in {self.relay_dir} starts after it")
        elif binlog_name not in files or (binlog_name == origin[0] and binlog_pos < origin[1]):
            raise BINLOG_PURGED(f"'{binlog_name}' at {binlog_pos}",
                                cause=f"the relay log in {self.relay_dir} starts after it")
        self._name = binlog_name
        self._pos = binlog_pos
        # Each file's format description event says whether its events have CRC32
        # trailers; the fake ROTATE before it carries one (as a checksum-aware source's).
        self.crc_len = 4
        self._crc = True

    def close(self) -> None:
        self._closed = True

    def _fake(self, etype: int, log_pos: int, body: bytes) -> bytes:
        return _event(etype, log_pos, body, crc=self._crc, flags=_ARTIFICIAL_F)

    def events(self, mark_refill: bool = False) -> Iterator[tuple[bytes, int]]:
        """`mark_refill`: also `(b"", -1)` each time the files have nothing new."""
        name, start = self._name, self._pos
        yield self._fake(E.ROTATE, 0, start.to_bytes(8, "little") + name.encode()), 0
        skipping = self._gtid is not None
        while not self._closed:
            fh = self._wait_open(name)
            if fh is None:
                return
            with fh:
                fde = self._wait_read(fh, 4)
                if fde is None:
                    return
                self._crc = E.parse_format_description(fde, E.HEADER_LEN, len(fde)).checksum
                yield fde, 0
                p = max(start, 4 + len(fde))
                next_name = ""
                idle_since = time.monotonic()
                buf, off = b"", 0  # buf holds the file's bytes from offset `base`
                base = p
                while not self._closed:
                    # Complete events in the buffer.
                    n = len(buf)
                    moved = False
                    while off + E.HEADER_LEN <= n:
                        size = int.from_bytes(buf[off + 9:off + 13], "little")
                        if off + size > n:
                            break
                        etype = buf[off + 4]
                        if skipping:
                            skipping, skip = self._skip(buf, off, etype, skipping)
                            if skip:
                                off += size
                                continue
                        if etype == E.ROTATE:
                            c = 4 if self._crc else 0
                            next_name = buf[off + 27:off + size - c].decode("utf-8", "replace")
                        yield buf, off
                        off += size
                        moved = True
                    if moved:
                        idle_since = time.monotonic()
                    # More of this file? (after what the buffer already holds)
                    fh.seek(base + n)
                    more = fh.read(_READ_CHUNK)
                    if more:
                        base += off
                        buf, off = buf[off:] + more, 0
                        continue
                    pos = base + off
                    if next_name:  # a real ROTATE ended the file
                        name, start = next_name, 4
                        break
                    later = [f for f in relay_files(self.relay_dir) if f > name]
                    if later:
                        # The writer finishes a file before it creates the next one: read
                        # once more, what was appended meanwhile is the file's end.
                        fh.seek(base + n)
                        more = fh.read(_READ_CHUNK)
                        if more:
                            base += off
                            buf, off = buf[off:] + more, 0
                            continue
                    if later and off == n:
                        # The writer moved on without a ROTATE (the source restarted): tell
                        # the reader as the source would, with a fake one.
                        name, start = later[0], 4
                        yield self._fake(E.ROTATE, 0, (4).to_bytes(8, "little")
                                         + name.encode()), 0
                        break
                    if not self.blocking:
                        return
                    if mark_refill and moved:
                        yield b"", -1
                    if time.monotonic() - idle_since >= self.heartbeat:
                        idle_since = time.monotonic()
                        yield self._fake(E.HEARTBEAT, pos, name.encode()), 0
                    time.sleep(_POLL_S)

    def _skip(self, buf: bytes, off: int, etype: int, skipping: bool) -> tuple[bool, bool]:
        """GTID mode, until the first transaction the start set lacks: (still skipping,
        skip this event)."""
        gtid = self._gtid
        assert gtid is not None
        body = off + E.HEADER_LEN
        if etype == E.MARIADB_GTID:
            seq = int.from_bytes(buf[body:body + 8], "little")
            domain = int.from_bytes(buf[body + 8:body + 12], "little")
            have = gtid.mariadb.get(domain)
            if have is not None and seq <= have[1]:
                return True, True
            return False, False
        if etype == E.GTID:
            import uuid as uuidlib
            sid = str(uuidlib.UUID(bytes=bytes(buf[body + 1:body + 17])))
            gno = int.from_bytes(buf[body + 17:body + 25], "little")
            if any(a <= gno <= b for a, b in gtid.mysql.get(sid, [])):
                return True, True
            return False, False
        # Inside a skipped transaction (or between transactions): drop its events, keep
        # the file-level ones.
        return True, etype in (E.XID, E.TABLE_MAP, E.MARIADB_ANNOTATE_ROWS, *E.QUERY_EVENTS,
                               *E.ROWS_EVENTS)

    def _wait_open(self, name: str) -> IO[bytes] | None:
        deadline = time.monotonic()
        while not self._closed:
            try:
                return open(self.relay_dir / name, "rb")
            except FileNotFoundError:
                if not self.blocking and time.monotonic() - deadline > 1.0:
                    return None
                time.sleep(_POLL_S)
        return None

    def _wait_read(self, fh: IO[bytes], at: int) -> bytes | None:
        """The complete event at offset `at` (the format description event)."""
        while not self._closed:
            fh.seek(at)
            head = fh.read(E.HEADER_LEN)
            if len(head) == E.HEADER_LEN:
                size = E.HEADER.unpack_from(head, 0)[3]
                rest = fh.read(size - E.HEADER_LEN)
                if len(rest) == size - E.HEADER_LEN:
                    return head + rest
            if not self.blocking:
                return None
            time.sleep(_POLL_S)
        return None


# --- purge -----------------------------------------------------------------------------------


def purge_relay(relay_dir: Path, before: str,
                protected: BinlogPosition | str | None = None) -> list[str]:
    """Deletes the relay files older than `before` (a file name); returns their names.
    `protected`: the oldest checkpoint (position or file name) of the subtasks reading
    this relay: a file at or after it is never deleted (RELAY_PURGE_PROTECTED), nor is
    the file the writer is on."""
    relay_dir = Path(relay_dir)
    prot = protected.binlog_name if isinstance(protected, BinlogPosition) else protected
    if prot and before > prot:
        raise RELAY_PURGE_PROTECTED(before, prot)
    meta = read_meta(relay_dir)
    if meta is not None and before > meta.binlog_name:
        raise RELAY_PURGE_PROTECTED(before, f"{meta.binlog_name} (the file being written)")
    gone = []
    for name in relay_files(relay_dir):
        if name >= before:
            break
        (relay_dir / name).unlink()
        gone.append(name)
    return gone
