"""Events of the cluster stream, owned by the coordinator: workers, masters, bindings.

A node is named by its `node_key` (its IP unless configured), not by Ray's node id, which
changes every time Ray starts: a restarted server finds its workers under the same names.
"""

from __future__ import annotations

from typing import Any

from events.base import DomainEvent, JsonDict, event, registry
from events.task import TaskSpec, spec_from_v1

CLUSTER_STREAM = "cluster"


@event
class ClusterInitialized(DomainEvent):
    event_type = "cluster.initialized"
    cluster_id: int


@event
class TopologySet(DomainEvent):
    event_type = "cluster.topology_set"
    topology: dict[str, Any]


@event
class MasterRegistered(DomainEvent):
    event_type = "cluster.master_registered"
    name: str
    node_key: str
    addr: str


@event
class MasterRemoved(DomainEvent):
    event_type = "cluster.master_removed"
    name: str


@event
class WorkerRegistered(DomainEvent):
    event_type = "cluster.worker_registered"
    name: str
    node_key: str
    slot: int
    addr: str


@event
class WorkerRemoved(DomainEvent):
    event_type = "cluster.worker_removed"
    name: str


@event
class SourceAdded(DomainEvent):
    """A source joined the cluster's index; request_id makes a retried create idempotent."""

    event_type = "cluster.source_added"
    source_name: str
    request_id: str


@event
class SourceRemoved(DomainEvent):
    event_type = "cluster.source_removed"
    source_name: str


@event
class SourceBound(DomainEvent):
    event_type = "cluster.source_bound"
    source_name: str
    worker_name: str


@event
class SourceUnbound(DomainEvent):
    event_type = "cluster.source_unbound"
    source_name: str
    worker_name: str


@event
class TaskAdded(DomainEvent):
    event_type = "cluster.task_added"
    task_name: str
    request_id: str
    source_names: list[str]


@event
class TaskSourcesChanged(DomainEvent):
    event_type = "cluster.task_sources_changed"
    task_name: str
    source_names: list[str]


@event
class TaskRemoved(DomainEvent):
    event_type = "cluster.task_removed"
    task_name: str


@event
class TemplateSet(DomainEvent):
    event_type = "cluster.template_set"
    schema_version = 2
    name: str
    task: TaskSpec


@registry.upcaster("cluster.template_set", 1)
def _template_v1(payload: JsonDict) -> JsonDict:
    return {**payload, "task": spec_from_v1(payload["task"])}


@event
class TemplateRemoved(DomainEvent):
    event_type = "cluster.template_removed"
    name: str


@event
class RelayStarted(DomainEvent):
    """A worker pulls a source's binlog into relay files in `relay_dir` (its own directory
    for the source), starting at `relay_binlog_name`/`relay_binlog_gtid` when it has none
    yet (empty: where the source's subtasks need it, else the source's current end)."""

    event_type = "cluster.relay_started"
    source_name: str
    worker_name: str
    relay_dir: str
    relay_binlog_name: str = ""
    relay_binlog_pos: int = 4
    relay_binlog_gtid: str = ""


@event
class RelayStopped(DomainEvent):
    event_type = "cluster.relay_stopped"
    source_name: str
    worker_name: str


@event
class TokenCreated(DomainEvent):
    """An API token, as its SHA-256 digest (domain/tokens.py); the token itself is only
    ever shown to whoever asked for it."""

    event_type = "cluster.token_created"
    token_id: str
    name: str
    digest: str
    created_at: str  # ISO 8601, UTC


@event
class TokenRevoked(DomainEvent):
    event_type = "cluster.token_revoked"
    token_id: str
