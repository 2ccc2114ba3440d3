"""The relay unit's purge by the source's purge config (no database: files and mtimes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from actors.relay_unit import RelayUnit
from errors import DMError


def _unit(relay_dir: Path, **purge: object) -> RelayUnit:
    return RelayUnit("worker1", {"source": "s", "relay_dir": str(relay_dir), "purge": purge})


def _files(relay_dir: Path, ages_h: list[float]) -> list[str]:
    names = []
    for i, age in enumerate(ages_h, start=1):
        p = relay_dir / f"mysql-bin.{i:06d}"
        p.write_bytes(b"\xfebin")
        t = time.time() - age * 3600
        os.utime(p, (t, t))
        names.append(p.name)
    return names


def _left(relay_dir: Path) -> list[str]:
    return sorted(p.name for p in relay_dir.iterdir() if p.name.startswith("mysql-bin."))


def test_expires_deletes_old_files_but_never_the_newest(tmp_path: Path) -> None:
    names = _files(tmp_path, [50, 40, 30, 1, 60])  # the newest file is old too
    assert _unit(tmp_path, expires=24).purge_by_config() == names[:3]
    assert _left(tmp_path) == names[3:]


def test_protected_checkpoint_stops_the_purge(tmp_path: Path) -> None:
    names = _files(tmp_path, [50, 40, 30, 20])
    gone = _unit(tmp_path, expires=10).purge_by_config(lambda: names[1])
    assert gone == names[:1]  # mysql-bin.000002 holds a subtask's checkpoint
    assert _left(tmp_path) == names[1:]


def test_nothing_to_purge(tmp_path: Path) -> None:
    names = _files(tmp_path, [5, 4, 3])
    assert _unit(tmp_path, expires=24).purge_by_config() == []
    assert _unit(tmp_path, expires=0, remain_space=0).purge_by_config() == []
    assert _left(tmp_path) == names


def test_remain_space_purges_oldest_first(tmp_path: Path) -> None:
    names = _files(tmp_path, [3, 2, 1])
    # Ask for more free space than any disk has: every file but the newest goes.
    assert _unit(tmp_path, remain_space=10**9).purge_by_config() == names[:2]


def test_purge_by_name_refuses_a_needed_file(tmp_path: Path) -> None:
    names = _files(tmp_path, [3, 2, 1])
    unit = _unit(tmp_path)
    with pytest.raises(DMError) as exc:
        unit.purge_before(names[2], names[1])
    assert exc.value.code == 30101
    assert _left(tmp_path) == names
    assert unit.purge_before(names[1], names[1]) == names[:1]
