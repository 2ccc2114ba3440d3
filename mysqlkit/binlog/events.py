"""Binlog event layout: type codes and the few body parsers the lean reader needs.

Every event is a 19-byte header (timestamp u32, type u8, server_id u32, event_size u32,
log_pos u32, flags u16, little-endian) and a body; with binlog_checksum=CRC32 the last 4
bytes of `event_size` are a CRC32 of the rest. The parsers take `(buf, start, end)` with
`start` at the body and `end` before the checksum, so nothing is copied to call them.
"""

from __future__ import annotations

import struct
import uuid as uuidlib
import zlib
from dataclasses import dataclass

from mysqlkit.binlog.rowcodec import (
    T_BIT,
    T_BLOB,
    T_DATETIME2,
    T_DOUBLE,
    T_ENUM,
    T_FLOAT,
    T_GEOMETRY,
    T_INT24,
    T_JSON,
    T_LONG,
    T_LONGLONG,
    T_NEWDECIMAL,
    T_SET,
    T_SHORT,
    T_STRING,
    T_TIME2,
    T_TIMESTAMP2,
    T_TINY,
    T_VAR_STRING,
    T_VARCHAR,
    T_YEAR,
    TableMapInfo,
)

HEADER_LEN = 19
MAGIC = b"\xfebin"

# Event types (MySQL's log_event.h, MariaDB's additions from 160).
QUERY = 2
STOP = 3
ROTATE = 4
FORMAT_DESCRIPTION = 15
XID = 16
TABLE_MAP = 19
WRITE_ROWS_V1, UPDATE_ROWS_V1, DELETE_ROWS_V1 = 23, 24, 25
HEARTBEAT = 27
IGNORABLE = 28
WRITE_ROWS_V2, UPDATE_ROWS_V2, DELETE_ROWS_V2 = 30, 31, 32
GTID = 33
ANONYMOUS_GTID = 34
PREVIOUS_GTIDS = 35
PARTIAL_UPDATE_ROWS = 39
TRANSACTION_PAYLOAD = 40
HEARTBEAT_V2 = 41
MARIADB_ANNOTATE_ROWS = 160
MARIADB_BINLOG_CHECKPOINT = 161
MARIADB_GTID = 162
MARIADB_GTID_LIST = 163
MARIADB_START_ENCRYPTION = 164
# MariaDB's log_bin_compress=ON: a QUERY event whose statement text is compressed, and
# rows events (166-168 of the v1 layout, 169-171 of v2) whose row images are.
MARIADB_QUERY_COMPRESSED = 165
QUERY_EVENTS = frozenset({QUERY, MARIADB_QUERY_COMPRESSED})

# rows event type -> (kind, has the v2 extra-data block, row images compressed)
ROWS_EVENTS: dict[int, tuple[str, bool, bool]] = {
    WRITE_ROWS_V1: ("insert", False, False), UPDATE_ROWS_V1: ("update", False, False),
    DELETE_ROWS_V1: ("delete", False, False), WRITE_ROWS_V2: ("insert", True, False),
    UPDATE_ROWS_V2: ("update", True, False), DELETE_ROWS_V2: ("delete", True, False),
    166: ("insert", False, True), 167: ("update", False, True), 168: ("delete", False, True),
    169: ("insert", True, True), 170: ("update", True, True), 171: ("delete", True, True),
}

LOG_EVENT_IGNORABLE_F = 0x80
MARIADB_FL_STANDALONE = 1

HEADER = struct.Struct("<IBIIIH")  # timestamp, type, server_id, event_size, log_pos, flags
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from


def lenenc(buf: bytes, p: int) -> tuple[int, int]:
    """A length-encoded integer at p: (value, position after it)."""
    b = buf[p]
    if b < 251:
        return b, p + 1
    if b == 252:
        return _U16(buf, p + 1)[0], p + 3
    if b == 253:
        return int.from_bytes(buf[p + 1:p + 4], "little"), p + 4
    return _U64(buf, p + 1)[0], p + 9


@dataclass(frozen=True, slots=True)
class FormatDescription:
    """What a format description event says about the events after it."""

    binlog_version: int
    server_version: str
    created: int
    post_header: bytes  # post-header length per event type (index type - 1)
    checksum: bool  # CRC32 trailers on the events of this file

    def post_header_len(self, event_type: int, default: int) -> int:
        i = event_type - 1
        return self.post_header[i] if 0 <= i < len(self.post_header) else default


def mariadb_uncompress(buf: bytes, start: int, end: int) -> bytes:
    """The block MariaDB's log_bin_compress wrote at buf[start:end] (a statement's text or a
    rows event's row images), uncompressed. Layout (binlog_buf_compress in MariaDB's
    log_event.cc): one byte 0x80 | algorithm << 4 | n (algorithm 0 = zlib), n bytes of the
    uncompressed length, big-endian, then the zlib stream. ValueError when it is not one."""
    head = buf[start]
    n = head & 0x07
    if head & 0x80 == 0 or head & 0x70 or not 1 <= n <= 4 or start + 1 + n > end:
        raise ValueError(f"not a compressed block (header byte {head:#04x})")
    size = int.from_bytes(buf[start + 1:start + 1 + n], "big")
    try:
        data = zlib.decompress(buf[start + 1 + n:end])
    except zlib.error as exc:
        raise ValueError(f"zlib: {exc}") from None
    if len(data) != size:
        raise ValueError(f"{len(data)} bytes uncompressed, the header says {size}")
    return data


def parse_format_description(buf: bytes, start: int, event_end: int) -> FormatDescription:
    """`event_end` includes the trailer: the checksum algorithm byte sits 5 bytes before
    the end (servers since MySQL 5.6.1 / MariaDB 5.3 always write it, and the 4 bytes of
    checksum even with the algorithm OFF)."""
    version = _U16(buf, start)[0]
    server = buf[start + 2:start + 52].split(b"\0", 1)[0].decode("ascii", "replace")
    created = _U32(buf, start + 52)[0]
    alg = buf[event_end - 5]
    return FormatDescription(version, server, created,
                             bytes(buf[start + 57:event_end - 5]), alg == 1)


_NUMERIC = frozenset({T_TINY, T_SHORT, T_INT24, T_LONG, T_LONGLONG, T_NEWDECIMAL, T_FLOAT,
                      T_DOUBLE, T_YEAR})
_META_SIGNEDNESS = 1


def parse_table_map(buf: bytes, start: int, end: int,
                    table_id_len: int = 6) -> tuple[int, TableMapInfo]:
    """(table id, TableMapInfo) of a TABLE_MAP body: ids, names, column types, their
    metadata, and the unsigned flags from the optional metadata when the binlog has them
    (binlog_row_metadata MINIMAL/FULL); the same fields pymysqlreplication's Column reads."""
    table_id = int.from_bytes(buf[start:start + table_id_len], "little")
    p = start + table_id_len + 2
    n = buf[p]
    schema = buf[p + 1:p + 1 + n].decode("utf-8", "replace")
    p += n + 2
    n = buf[p]
    table = buf[p + 1:p + 1 + n].decode("utf-8", "replace")
    p += n + 2
    ncols, p = lenenc(buf, p)
    raw_types = buf[p:p + ncols]
    p += ncols
    meta_len, p = lenenc(buf, p)
    m, meta_end = p, p + meta_len
    types: list[int] = []
    meta: list[tuple[int, ...]] = []
    for t in raw_types:
        if t == T_VARCHAR:
            meta.append((_U16(buf, m)[0],))
            m += 2
        elif t in (T_VAR_STRING, T_STRING):
            real, low = buf[m], buf[m + 1]
            m += 2
            if real in (T_ENUM, T_SET):
                t = real
                meta.append((low,))
            else:
                max_length = ((((real << 8) | low) >> 4) & 0x300) ^ 0x300
                meta.append((max_length + low,))
        elif t in (T_FLOAT, T_DOUBLE, T_TIMESTAMP2, T_DATETIME2, T_TIME2, T_BLOB, T_GEOMETRY,
                   T_JSON):
            meta.append((buf[m],))
            m += 1
        elif t == T_NEWDECIMAL:
            meta.append((buf[m], buf[m + 1]))
            m += 2
        elif t == T_BIT:
            meta.append((buf[m + 1] * 8 + buf[m],))
            m += 2
        elif t in (T_ENUM, T_SET):
            meta.append((buf[m + 1],))
            m += 2
        else:
            meta.append(())
        types.append(t)
    p = meta_end + (ncols + 7) // 8  # skip the nullable bitmap
    unsigned = [False] * ncols
    while p < end:  # optional metadata: (type, lenenc length, value) triples
        kind = buf[p]
        length, p = lenenc(buf, p + 1)
        if kind == _META_SIGNEDNESS:
            bit = 0
            for i, t in enumerate(types):
                if t in _NUMERIC:
                    unsigned[i] = bool(buf[p + (bit >> 3)] & (0x80 >> (bit & 7)))
                    bit += 1
        p += length
    return table_id, TableMapInfo(schema, table, tuple(types), tuple(meta), tuple(unsigned))


def parse_mariadb_gtid_list(buf: bytes, start: int) -> list[tuple[int, int, int]]:
    """(domain, server, seq) triples of a MariaDB GTID_LIST event."""
    count = _U32(buf, start)[0] & 0x0FFFFFFF  # the top 4 bits are flags
    out = []
    p = start + 4
    for _ in range(count):
        domain, server = struct.unpack_from("<II", buf, p)
        out.append((domain, server, _U64(buf, p + 8)[0]))
        p += 16
    return out


def parse_previous_gtids(buf: bytes, start: int) -> list[tuple[str, int, int]]:
    """(uuid, first, last) intervals of MySQL's Previous_gtids event: n_sids, then per sid
    the uuid, n_intervals and [start, end) pairs."""
    out = []
    (n_sid,) = _U64(buf, start)
    p = start + 8
    for _ in range(n_sid):
        sid = str(uuidlib.UUID(bytes=bytes(buf[p:p + 16])))
        (n_iv,) = _U64(buf, p + 16)
        p += 24
        for _ in range(n_iv):
            lo, hi = struct.unpack_from("<QQ", buf, p)
            p += 16
            out.append((sid, lo, hi - 1))
    return out
