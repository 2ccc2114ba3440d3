"""The relay directory's layout: the relay files (one per upstream binlog file, same name,
same offsets), `relay.meta` (what the writer has, replaced atomically), building the events
the writer and reader fake, and purging old files. See the package doc for the format."""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from errors import RELAY_INVALID, RELAY_PURGE_PROTECTED
from mysqlkit.binlog import events as E
from mysqlkit.position import BinlogPosition

__all__ = ["META_NAME", "RelayMeta", "purge_relay", "read_meta", "relay_files"]

META_NAME = "relay.meta"
ARTIFICIAL_F = 0x20  # event flag of fake ROTATE / GTID_LIST events (never written)
_NAME_RE = re.compile(r"^[^.][^/]*\.\d+$")  # "mysql-bin.000001"; not relay.meta or temps


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


def write_meta(relay_dir: Path, meta: RelayMeta) -> None:
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


def make_event(etype: int, log_pos: int, body: bytes, *, crc: bool, ts: int = 0,
           server_id: int = 0, flags: int = 0) -> bytes:
    size = E.HEADER_LEN + len(body) + (4 if crc else 0)
    data = E.HEADER.pack(ts, etype, server_id, size, log_pos, flags) + body
    return data + zlib.crc32(data).to_bytes(4, "little") if crc else data


def with_log_pos(event: bytes, log_pos: int, crc: bool) -> bytes:
    """The event with its header's log_pos replaced (and its checksum recomputed)."""
    data = event[:13] + log_pos.to_bytes(4, "little") + event[17:len(event) - (4 if crc else 0)]
    return data + zlib.crc32(data).to_bytes(4, "little") if crc else data


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
