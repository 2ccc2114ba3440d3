"""Reading the relay back: `RelayFileSource` gives the relay files' raw events as the
source's stream would, and `relay_reader` plugs it into a `BinlogReader`, so a subtask reads
the same changes, positions and GTID sets from the relay as from the source."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from errors import BINLOG_NO_START, BINLOG_PURGED, BINLOG_READ
from mysqlkit.binlog import events as E
from mysqlkit.binlog.reader import BinlogReader, Start
from mysqlkit.binlog.stream import EventSource
from mysqlkit.position import GtidSet
from mysqlkit.relay.files import ARTIFICIAL_F, make_event, read_meta, relay_files
from mysqlkit.upstream import ConnConfig

_POLL_S = 0.02
_READ_CHUNK = 1 << 20


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
        return make_event(etype, log_pos, body, crc=self._crc, flags=ARTIFICIAL_F)

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


def relay_reader(
    relay_dir: Path,
    start: Start,
    *,
    flavor: str | None = None,
    gtid_mode: bool = False,
    want_table: Callable[[str, str], bool] | None = None,
    unsigned_of: Callable[[str, str], Sequence[bool] | None] | None = None,
    blocking: bool = True,
    heartbeat: float = 1.0,
) -> BinlogReader:
    """A `BinlogReader` of the relay files a `RelayWriter` writes in `relay_dir` instead
    of the source: identical changes, positions and GTID sets, so a caller can switch
    between the two at any resume point. Follows the files as they grow (Heartbeat when
    idle); BINLOG_PURGED when the relay does not have the start. No start_time (resolve it
    on the source first)."""
    if start.start_time is not None:
        raise ValueError("start_time needs the source: resolve it with "
                         "find_start_by_time first")
    relay_dir = Path(relay_dir)

    def open_files(start: Start, *, flavor: str | None, gtid_mode: bool, blocking: bool,
                   heartbeat: float) -> tuple[EventSource, str]:
        if flavor is None:
            meta = read_meta(relay_dir)
            if meta is None:
                raise BINLOG_READ(f"no relay log in {relay_dir}")
            flavor = meta.flavor
        if gtid_mode:
            if not start.gtid:
                raise BINLOG_NO_START("GTID mode needs a GTID set")
            return RelayFileSource(relay_dir, gtid=GtidSet.parse(start.gtid, flavor),
                                   blocking=blocking, heartbeat=heartbeat), flavor
        if not start.binlog_name:
            raise BINLOG_NO_START("no binlog file given")
        return RelayFileSource(relay_dir, start.binlog_name, start.binlog_pos,
                               blocking=blocking, heartbeat=heartbeat), flavor

    filters: dict[str, Any] = {}
    if want_table is not None:
        filters["want_table"] = want_table
    if unsigned_of is not None:
        filters["unsigned_of"] = unsigned_of
    return BinlogReader(ConnConfig("relay", 0, ""), 0, start, flavor=flavor,
                        gtid_mode=gtid_mode, blocking=blocking, heartbeat=heartbeat,
                        opener=open_files, **filters)
