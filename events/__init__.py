"""Pure contracts: event models, their registry, and the DM error family.

Importing this package registers every event type, so the store can decode any stream.
"""

from events import cluster, source, task
from events.base import DomainEvent, EventRegistry, NewEvent, RecordedEvent, event, registry
from events.errors import DMError, ErrorCode

__all__ = [
    "DMError",
    "DomainEvent",
    "ErrorCode",
    "EventRegistry",
    "NewEvent",
    "RecordedEvent",
    "cluster",
    "event",
    "registry",
    "source",
    "task",
]
