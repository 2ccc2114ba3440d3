"""A source's own state, folded from its stream."""

from __future__ import annotations

from events.base import DomainEvent, StreamState
from events.source import (
    SourceCreated,
    SourceDeleted,
    SourceDisabled,
    SourceEnabled,
    SourceSpec,
    SourceUpdated,
    SourceWorkerChanged,
)


class SourceState(StreamState):
    state_type = "source"
    state_version = 1

    exists: bool = False
    request_id: str = ""
    spec: SourceSpec | None = None
    enabled: bool = False
    worker_name: str = ""

    def apply(self, ev: DomainEvent) -> None:
        match ev:
            case SourceCreated():
                # A name can be deleted and created again: the stream goes on.
                self.exists, self.request_id = True, ev.request_id
                self.spec, self.enabled, self.worker_name = ev.spec, ev.enabled, ""
            case SourceUpdated():
                self.spec = ev.spec
            case SourceEnabled():
                self.enabled = True
            case SourceDisabled():
                self.enabled = False
            case SourceWorkerChanged():
                self.worker_name = ev.worker_name
            case SourceDeleted():
                self.exists, self.spec, self.worker_name, self.enabled = False, None, "", False
