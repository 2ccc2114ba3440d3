"""Randomized delays at actor boundaries, for hunting races (test-only, off in production).

Like the crash-probability hook of Ray Serve's controller: set in the environment of the
process that starts Ray (Ray's workers inherit it) and every call into a decorated actor
first waits a random time, so that the interleavings a loaded machine produces once in a
while happen on every run.

    DMRAY_CHAOS_JITTER_MS=50   # the longest delay, in ms; unset, empty or 0: off
    DMRAY_CHAOS_SEED=7         # optional: the same seed gives each process (seed, pid)
                               # the same sequence of delays

    @ray.remote(num_cpus=0)
    @with_jitter               # below @ray.remote: it decorates the plain class
    class SomeActor:
        async def op(self, x: int) -> int: ...

    await jitter("runner.record")   # a hook point anywhere else in async code

With DMRAY_CHAOS_JITTER_MS unset `with_jitter` returns the class itself, unchanged, so
production code pays nothing; `jitter` returns at once after one dictionary look-up.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

ENV_JITTER_MS = "DMRAY_CHAOS_JITTER_MS"
ENV_SEED = "DMRAY_CHAOS_SEED"

log = logging.getLogger("dmray.chaos")

T = TypeVar("T")

# (jitter env text, seed env text, pid) -> (max delay in s, rng): rebuilt when any changes
# (a forked process, or a test that sets the variables).
_state: tuple[tuple[str, str, int], float, random.Random] | None = None


def max_delay_ms() -> float:
    """The configured longest delay in ms; 0 when the hook is off (unset, empty, not a
    number, or not positive)."""
    text = os.environ.get(ENV_JITTER_MS, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        log.warning("%s=%r is not a number: chaos jitter stays off", ENV_JITTER_MS, text)
        return 0.0
    return value if value > 0 else 0.0


def enabled() -> bool:
    return max_delay_ms() > 0


def _current() -> tuple[float, random.Random]:
    global _state
    key = (os.environ.get(ENV_JITTER_MS, ""), os.environ.get(ENV_SEED, ""), os.getpid())
    if _state is None or _state[0] != key:
        limit_s = max_delay_ms() / 1000.0
        seed = key[1].strip()
        # A string seed is hashed with SHA-512: stable across runs, whatever PYTHONHASHSEED.
        rng = random.Random(f"{seed}:{key[2]}") if seed else random.Random()
        if limit_s > 0:
            log.info("chaos jitter on: up to %.0f ms, seed %r, pid %d", limit_s * 1000, seed,
                     key[2])
        _state = (key, limit_s, rng)
    return _state[1], _state[2]


def next_delay() -> float:
    """The next delay in seconds (0 when off): uniform in [0, max], and exactly 0 one time
    in four, so that immediate calls still interleave with delayed ones."""
    limit_s, rng = _current()
    if limit_s <= 0:
        return 0.0
    if rng.random() < 0.25:
        return 0.0
    return rng.uniform(0.0, limit_s)


async def jitter(point: str) -> None:
    """Wait a random time at this point when the hook is on; return at once when off."""
    if ENV_JITTER_MS not in os.environ:
        return
    delay = next_delay()
    if delay > 0:
        log.debug("chaos: %s waits %.1f ms", point, delay * 1000)
        await asyncio.sleep(delay)
    else:
        await asyncio.sleep(0)  # still let other coroutines run first


def _wrap(point: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)  # name, qualname, doc, __wrapped__ (Ray reads the signature there)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        await jitter(point)
        return await fn(self, *args, **kwargs)

    wrapper.__chaos_point__ = point  # type: ignore[attr-defined]
    return wrapper


def with_jitter(cls: type[T]) -> type[T]:
    """Class decorator: every public async method (own or inherited) first awaits
    `jitter("<Class>.<method>")`. Put it below `@ray.remote`, or call it before
    `ray.remote(cls)`. Without DMRAY_CHAOS_JITTER_MS it returns `cls` unchanged."""
    if not enabled():
        return cls
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, (staticmethod, classmethod)):
            continue
        if inspect.iscoroutinefunction(attr) and not hasattr(attr, "__chaos_point__"):
            setattr(cls, name, _wrap(f"{cls.__name__}.{name}", attr))
    return cls


__all__ = ["ENV_JITTER_MS", "ENV_SEED", "enabled", "jitter", "max_delay_ms", "next_delay",
           "with_jitter"]
