"""A stream's state kept in memory: rebuilt from snapshot + events, advanced by appends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Generic, TypeVar

from events.base import DomainEvent, NewEvent, StreamState
from storage.eventstore import EventStore, Snapshot, WrongExpectedVersion

S = TypeVar("S", bound=StreamState)

log = logging.getLogger("dmray.storage")


class Aggregate(Generic[S]):
    """Owner of one stream inside one actor.

    A command is handled as: validate against `state` → events → `record` (append with the
    expected version, then apply). Appends of one aggregate are serialized by its own lock,
    so writers in the owning process (commands, a task's runners) can never race each
    other on the version: each append expects the version the previous one left. A
    conflicting append can then only come from another process writing the same stream
    (an owner that should not exist); the state is reloaded before the error propagates,
    so the caller can decide again on fresh state.
    """

    def __init__(self, store: EventStore, stream_id: str, state_cls: type[S],
                 snapshot_every: int = 50):
        self.store = store
        self.stream_id = stream_id
        self.state_cls = state_cls
        self.snapshot_every = snapshot_every
        self.state: S = state_cls()
        self.version = 0
        self._append_lock = asyncio.Lock()

    async def load(self) -> S:
        async with self._append_lock:
            return await self._load()

    async def _load(self) -> S:
        state = self.state_cls()
        version = 0
        snap = await self.store.load_snapshot(self.stream_id)
        if (snap is not None and snap.state_type == self.state_cls.state_type
                and snap.schema_version == self.state_cls.state_version):
            state = self.state_cls.model_validate_json(snap.data)
            version = snap.version
        for rec in await self.store.read_stream(self.stream_id, after_version=version):
            state.apply(rec.event)
            version = rec.version
        self.state, self.version = state, version
        return state

    async def record(self, *events: DomainEvent) -> None:
        if not events:
            return
        async with self._append_lock:
            await self._record(events)

    async def _record(self, events: Sequence[DomainEvent]) -> None:
        try:
            new_version = await self.store.append(
                self.stream_id, [NewEvent.of(e) for e in events], self.version
            )
        except WrongExpectedVersion:
            await self._load()
            raise
        for e in events:
            self.state.apply(e)
        before, self.version = self.version, new_version
        if before // self.snapshot_every != new_version // self.snapshot_every:
            try:
                await self.snapshot()
            except Exception as exc:  # a snapshot is a cache: the events are recorded
                log.warning("snapshot of %s failed: %s", self.stream_id, type(exc).__name__)

    async def snapshot(self) -> None:
        await self.store.save_snapshot(Snapshot(
            stream_id=self.stream_id,
            version=self.version,
            state_type=self.state_cls.state_type,
            schema_version=self.state_cls.state_version,
            data=self.state.model_dump_json().encode(),
        ))

    def applied(self, events: Sequence[DomainEvent]) -> S:
        """What the state would be after `events`, without recording them."""
        probe = self.state.model_copy(deep=True)
        for e in events:
            probe.apply(e)
        return probe
