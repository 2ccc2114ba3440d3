"""Pure contracts: event models and their registry.

Importing this package registers every event type, so the store can decode any stream.
"""

from events import cluster, source, task
from events.base import DomainEvent, EventRegistry, NewEvent, RecordedEvent, event, registry

__all__ = [
    "DomainEvent",
    "EventRegistry",
    "NewEvent",
    "RecordedEvent",
    "cluster",
    "event",
    "registry",
    "source",
    "task",
]
