"""Times and durations as DM's start-task request writes them."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from errors import API_ERROR

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
             "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string such as "60s", "1m30s" or "1.5h" (DM's
    safe_mode_time_duration); a bare "0" is allowed, as in Go."""
    t = text.strip()
    if t == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _GO_PART.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise API_ERROR(f"invalid duration {text!r}: use a Go duration such as \"60s\" or "
                        "\"1m30s\"")
    return total


def parse_start_time(text: str, timezone: str | None = None) -> float:
    """Unix time of DM's start_time ("2006-01-02 15:04:05" or RFC 3339). A time without
    an offset is read in the task's timezone (an IANA name or "+08:00"), else in UTC."""
    t = text.strip().replace("T", " ", 1)
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        raise API_ERROR(f"invalid start_time {text!r}: use \"2006-01-02 15:04:05\" or "
                        "RFC 3339") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_zone(timezone))
    return when.timestamp()


def _zone(name: str | None) -> dt.tzinfo:
    if not name:
        return dt.UTC
    m = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})", name.strip())
    if m:
        delta = dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return dt.timezone(-delta if m.group(1) == "-" else delta)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise API_ERROR(f"unknown timezone {name!r}") from None
