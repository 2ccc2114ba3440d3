"""Processes as Linux's /proc shows them: what `dmray serve` needs to find and reap the Ray
and HAProxy processes it started, and what the tests and benchmarks read of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat that are read here."""

    pid: int
    comm: str
    state: str
    ppid: int
    session: int
    cpu_ticks: int  # utime + stime
    children_ticks: int  # cutime + cstime: of the children it has reaped
    start_time: str  # in ticks since boot: with the pid, names one process

    @property
    def zombie(self) -> bool:
        return self.state == "Z"

    def cpu_s(self, children: bool = False) -> float:
        return (self.cpu_ticks + (self.children_ticks if children else 0)) / _TICK


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
    f = text[text.rfind(")") + 2:].split()
    return ProcStat(pid=pid, comm=text[text.find("(") + 1:text.rfind(")")], state=f[0],
                    ppid=int(f[1]), session=int(f[3]), cpu_ticks=int(f[11]) + int(f[12]),
                    children_ticks=int(f[13]) + int(f[14]), start_time=f[19])


def processes() -> Iterator[ProcStat]:
    """Every process there is now."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := read_stat(int(d.name))) is not None:
            yield st


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for st in processes():
        children.setdefault(st.ppid, []).append(st.pid)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def start_time(pid: int) -> str | None:
    """When the living process `pid` started (None: gone, or a zombie that has exited)."""
    st = read_stat(pid)
    return None if st is None or st.zombie else st.start_time
