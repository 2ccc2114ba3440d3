"""Crash points for tests: a process dies at a named point of its work, once per arming.

Off in production (no fault directory is configured). A test arms a point by creating
the file `<fault_dir>/<point>` (see `arm`); the first process that reaches the point
removes the file and exits at once, as `kill -9` would, so the test places a crash
exactly where a window may be (just before a DDL, between the DDL and its checkpoint)
instead of hoping a timed kill lands there. File-based so that an arming survives into
the processes Ray starts and is consumed exactly once across them (unlink is atomic).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("dmray.faults")


def arm(fault_dir: str | Path, point: str) -> Path:
    path = Path(fault_dir) / point
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def armed(fault_dir: str | Path, point: str) -> bool:
    return bool(fault_dir) and (Path(fault_dir) / point).exists()


def crash_point(fault_dir: str, point: str) -> None:
    """Exit the process here if the point is armed (and disarm it)."""
    if not fault_dir:
        return
    try:
        os.unlink(os.path.join(fault_dir, point))
    except FileNotFoundError:
        return
    log.warning("fault point %s: exiting the process", point)
    os._exit(137)
