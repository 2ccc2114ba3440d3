"""actors.chaos: the race-hunting delay hook is off unless DMRAY_CHAOS_JITTER_MS is set, keeps
the decorated methods' names and signatures (Ray reads them), and is seeded per process."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from typing import Any

import pytest
import ray

from actors import chaos


class Sample:
    def __init__(self, x: int) -> None:
        self.x = x

    async def add(self, y: int, *, z: int = 1) -> int:
        """Adds."""
        return self.x + y + z

    def pid(self) -> int:
        return os.getpid()

    async def _private(self) -> str:
        return "p"

    @staticmethod
    async def static_op() -> str:
        return "s"


class Child(Sample):
    async def more(self) -> int:
        return self.x * 2


def fresh(base: type) -> type:
    """A new subclass per test, so decorating it does not touch the shared class."""
    return type(base.__name__, (base,), {})


def test_off_when_unset_returns_the_class_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(chaos.ENV_JITTER_MS, raising=False)
    cls = fresh(Sample)
    before = dict(vars(cls))
    assert chaos.with_jitter(cls) is cls
    assert dict(vars(cls)) == before
    assert not chaos.enabled() and chaos.next_delay() == 0.0
    for off in ("", "0", "-5", "fast"):
        monkeypatch.setenv(chaos.ENV_JITTER_MS, off)
        assert not chaos.enabled(), off
        assert chaos.with_jitter(fresh(Sample)).__dict__.get("add") is None


def test_wraps_public_async_methods_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(chaos.ENV_JITTER_MS, "3")
    cls: type[Any] = chaos.with_jitter(fresh(Child))
    for name in ("add", "more"):  # own and inherited
        m = inspect.getattr_static(cls, name)
        assert m.__chaos_point__ == f"{cls.__name__}.{name}"
        assert inspect.iscoroutinefunction(m)
        assert m.__name__ == name
    assert inspect.signature(cls.add) == inspect.signature(Sample.add)
    assert cls.add.__doc__ == "Adds."
    assert "add" not in vars(Sample) or not hasattr(Sample.add, "__chaos_point__")
    assert not hasattr(cls.pid, "__chaos_point__")
    assert not hasattr(cls._private, "__chaos_point__")
    assert not hasattr(inspect.getattr_static(cls, "static_op"), "__chaos_point__")
    # Decorating twice does not stack the delays.
    assert chaos.with_jitter(cls).add is cls.add

    obj = cls(2)
    assert asyncio.run(obj.add(3, z=4)) == 9
    assert asyncio.run(obj.more()) == 4
    assert asyncio.run(cls.static_op()) == "s"
    # Ray builds its actor class from it: methods and their signatures are seen.
    actor_cls = ray.remote(num_cpus=0)(cls)
    assert hasattr(actor_cls, "add") and hasattr(actor_cls, "more")


def test_delays_are_bounded_and_seeded_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(chaos.ENV_JITTER_MS, "40")
    monkeypatch.setenv(chaos.ENV_SEED, "7")
    first = [chaos.next_delay() for _ in range(200)]
    assert all(0.0 <= d <= 0.040 for d in first)
    assert any(d == 0.0 for d in first) and any(d > 0.02 for d in first)
    monkeypatch.setenv(chaos.ENV_SEED, "8")
    other = [chaos.next_delay() for _ in range(200)]
    assert other != first
    monkeypatch.setenv(chaos.ENV_SEED, "7")  # the same (seed, pid): the same sequence
    assert [chaos.next_delay() for _ in range(200)] == first


def test_jitter_waits_at_most_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(chaos.ENV_JITTER_MS, "20")

    async def many() -> float:
        t0 = time.monotonic()
        for _ in range(20):
            await chaos.jitter("unit.point")
        return time.monotonic() - t0

    took = asyncio.run(many())
    assert 0.0 < took < 20 * 0.020 + 0.5
    monkeypatch.delenv(chaos.ENV_JITTER_MS)
    t0 = time.monotonic()
    asyncio.run(many())
    assert time.monotonic() - t0 < 0.2
