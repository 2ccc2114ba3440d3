"""The cluster stream's state: workers, masters, the source index and bindings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from events.base import DomainEvent, StreamState
from events.cluster import (
    ClusterInitialized,
    MasterRegistered,
    MasterRemoved,
    RelayStarted,
    RelayStopped,
    SourceAdded,
    SourceBound,
    SourceRemoved,
    SourceUnbound,
    TaskAdded,
    TaskRemoved,
    TaskSourcesChanged,
    TemplateRemoved,
    TemplateSet,
    TokenCreated,
    TokenRevoked,
    TopologySet,
    WorkerRegistered,
    WorkerRemoved,
)
from events.task import TaskSpec


class WorkerInfo(BaseModel):
    name: str
    node_key: str
    slot: int
    addr: str


class TokenInfo(BaseModel):
    token_id: str
    name: str
    digest: str
    created_at: str


class MasterInfo(BaseModel):
    name: str
    node_key: str
    addr: str


class ClusterState(StreamState):
    state_type = "cluster"
    state_version = 2

    cluster_id: int = 0
    topology: dict[str, Any] | None = None
    workers: dict[str, WorkerInfo] = {}
    masters: dict[str, MasterInfo] = {}
    # source name → request id of the create that added it
    sources: dict[str, str] = {}
    bindings: dict[str, str] = {}  # source name → worker name
    tasks: dict[str, list[str]] = {}  # task name → its sources (one subtask each)
    task_requests: dict[str, str] = {}  # task name → request id of its create
    templates: dict[str, TaskSpec] = {}
    # worker name → the relay it runs: {source, relay_dir, binlog_name, binlog_pos, gtid}
    relays: dict[str, dict[str, Any]] = {}
    tokens: dict[str, TokenInfo] = {}  # API tokens by id
    # Name counters only grow, so a removed worker's name is never handed out again.
    worker_seq: int = 0
    master_seq: int = 0

    def apply(self, ev: DomainEvent) -> None:
        match ev:
            case ClusterInitialized():
                self.cluster_id = ev.cluster_id
            case TopologySet():
                self.topology = ev.topology
            case WorkerRegistered():
                self.workers[ev.name] = WorkerInfo(name=ev.name, node_key=ev.node_key,
                                                   slot=ev.slot, addr=ev.addr)
                self.worker_seq = max(self.worker_seq, _seq(ev.name, "worker"))
            case WorkerRemoved():
                self.workers.pop(ev.name, None)
                self.relays.pop(ev.name, None)
            case MasterRegistered():
                self.masters[ev.name] = MasterInfo(name=ev.name, node_key=ev.node_key,
                                                   addr=ev.addr)
                self.master_seq = max(self.master_seq, _seq(ev.name, "master"))
            case MasterRemoved():
                self.masters.pop(ev.name, None)
            case _:
                self._apply_sources_and_tasks(ev)

    def _apply_sources_and_tasks(self, ev: DomainEvent) -> None:
        match ev:
            case SourceAdded():
                self.sources[ev.source_name] = ev.request_id
            case SourceRemoved():
                self.sources.pop(ev.source_name, None)
                self.bindings.pop(ev.source_name, None)
                for w in [w for w, r in self.relays.items() if r["source"] == ev.source_name]:
                    del self.relays[w]
            case RelayStarted():
                self.relays[ev.worker_name] = {
                    "source": ev.source_name, "relay_dir": ev.relay_dir,
                    "binlog_name": ev.relay_binlog_name, "binlog_pos": ev.relay_binlog_pos,
                    "gtid": ev.relay_binlog_gtid}
            case RelayStopped():
                if self.relays.get(ev.worker_name, {}).get("source") == ev.source_name:
                    del self.relays[ev.worker_name]
            case SourceBound():
                self.bindings[ev.source_name] = ev.worker_name
            case SourceUnbound():
                if self.bindings.get(ev.source_name) == ev.worker_name:
                    del self.bindings[ev.source_name]
            case TaskAdded():
                self.tasks[ev.task_name] = list(ev.source_names)
                self.task_requests[ev.task_name] = ev.request_id
            case TaskSourcesChanged():
                self.tasks[ev.task_name] = list(ev.source_names)
            case TaskRemoved():
                self.tasks.pop(ev.task_name, None)
                self.task_requests.pop(ev.task_name, None)
            case TemplateSet():
                self.templates[ev.name] = ev.task
            case TemplateRemoved():
                self.templates.pop(ev.name, None)
            case TokenCreated():
                self.tokens[ev.token_id] = TokenInfo(token_id=ev.token_id, name=ev.name,
                                                     digest=ev.digest, created_at=ev.created_at)
            case TokenRevoked():
                self.tokens.pop(ev.token_id, None)

    # --- queries ------------------------------------------------------------------
    def worker_for_slot(self, node_key: str, slot: int) -> WorkerInfo | None:
        for w in self.workers.values():
            if w.node_key == node_key and w.slot == slot:
                return w
        return None

    def master_for_node(self, node_key: str) -> MasterInfo | None:
        for m in self.masters.values():
            if m.node_key == node_key:
                return m
        return None

    def source_of_worker(self, worker: str) -> str | None:
        for source, w in self.bindings.items():
            if w == worker:
                return source
        return None

    def relay_workers(self, source: str) -> list[str]:
        return sorted(w for w, r in self.relays.items() if r["source"] == source)

    def tasks_of_source(self, source: str) -> list[str]:
        return sorted(t for t, sources in self.tasks.items() if source in sources)

    def next_worker_name(self) -> str:
        return f"worker{self.worker_seq + 1}"

    def next_master_name(self) -> str:
        return f"master{self.master_seq + 1}"


def _seq(name: str, prefix: str) -> int:
    tail = name.removeprefix(prefix)
    return int(tail) if tail.isdigit() else 0
