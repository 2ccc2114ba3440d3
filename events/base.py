"""Event contracts: frozen models with a stable type name and a schema version.

An event class declares `event_type` (never derived from the Python name, so classes can
be renamed and moved) and `schema_version`. Stored bytes are orjson of the model's fields;
the type name and version sit on the stored envelope. Reading an older version runs the
registered upcasters in order before validation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict

JsonDict = dict[str, Any]
Upcaster = Callable[[JsonDict], JsonDict]


class DomainEvent(BaseModel):
    """Base of every event. Subclasses set `event_type` and, when changed, `schema_version`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


E = TypeVar("E", bound=type[DomainEvent])


class DuplicateEventType(Exception):
    pass


class UnknownEventType(Exception):
    pass


class EventRegistry:
    """Maps stable type names to classes; refuses a second class under one name."""

    def __init__(self) -> None:
        self._types: dict[str, type[DomainEvent]] = {}
        # (type name, from version) → function turning that version's dict into the next
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: E) -> E:
        name = getattr(cls, "event_type", None)
        if not name:
            raise TypeError(f"{cls.__name__} has no event_type")
        existing = self._types.get(name)
        if existing is not None and existing is not cls:
            raise DuplicateEventType(
                f"event type {name!r} is already registered by {existing.__qualname__}"
            )
        self._types[name] = cls
        return cls

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        def deco(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return deco

    def cls_for(self, event_type: str) -> type[DomainEvent]:
        try:
            return self._types[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def decode(self, event_type: str, schema_version: int, data: bytes) -> DomainEvent:
        cls = self.cls_for(event_type)
        payload: JsonDict = orjson.loads(data)
        version = schema_version
        while version < cls.schema_version:
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise UnknownEventType(
                    f"no upcaster for {event_type} from schema version {version}"
                )
            payload = step(payload)
            version += 1
        return cls.model_validate(payload)


registry = EventRegistry()


def event(cls: E) -> E:
    """Class decorator: register an event class in the process-wide registry."""
    return registry.register(cls)


class RecordedEvent(BaseModel):
    """An event as the store returns it: the envelope plus the decoded event."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    stream_id: str
    version: int
    position: int
    recorded_at: datetime
    event: DomainEvent


class NewEvent(BaseModel):
    """An event ready for the store: type name, schema version and bytes."""

    model_config = ConfigDict(frozen=True)

    event_type: str
    schema_version: int
    data: bytes

    @classmethod
    def of(cls, ev: DomainEvent) -> NewEvent:
        return cls(event_type=ev.event_type, schema_version=ev.schema_version,
                   data=ev.to_bytes())


class StreamState(BaseModel):
    """A fold over one stream. Subclasses implement `apply`; they are snapshot-able as JSON.

    `state_version` is bumped when the shape changes, which makes older snapshots unusable
    (the stream is then replayed from its start, which is always correct).
    """

    state_type: ClassVar[str]
    state_version: ClassVar[int] = 1

    def apply(self, ev: DomainEvent) -> None:
        raise NotImplementedError
