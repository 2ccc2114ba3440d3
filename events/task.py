"""Events of a task's stream, owned by its task actor. A task is stored as a `TaskSpec`:
DM's Task document with its secrets taken out of it and sealed."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict

from events.base import DomainEvent, JsonDict, event, registry


def task_stream(name: str) -> str:
    return f"task:{name}"


# Where a DM Task document holds secrets, as dotted paths.
SECRET_FIELDS = ("target_config.password", "target_config.security.ssl_key_content",
                 "source_config.full_migrate_conf.security.ssl_key_content")


class TaskSpec(BaseModel):
    """A task as the log keeps it; never holds a plain secret. `document` is DM's Task
    without the fields of SECRET_FIELDS, which `sealed` holds encrypted."""

    model_config = ConfigDict(frozen=True)
    document: dict[str, Any]
    sealed: dict[str, str] = {}
    # Secrets that schema version 1 kept in the clear (a TLS key): read until the task or
    # template is written again, never written.
    unsealed: dict[str, str] = {}

    @property
    def name(self) -> str:
        return str(self.document.get("name", ""))

    @property
    def task_mode(self) -> str:
        return str(self.document.get("task_mode", "full"))

    @property
    def sources(self) -> list[str]:
        conf = self.document.get("source_config", {}).get("source_conf", [])
        return [c["source_name"] for c in conf]


def take_field(doc: JsonDict, path: str) -> str | None:
    """Remove the field at dotted `path` from `doc` and return it (None: not there)."""
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict) or last not in node:
        return None
    return str(node.pop(last) or "")


def spec_from_v1(doc: JsonDict) -> JsonDict:
    """Schema version 1 stored the document itself: the password encrypted in it as
    `target_config.password_enc`, the other secrets in the clear."""
    document = copy.deepcopy(doc)
    sealed = {}
    enc = take_field(document, "target_config.password_enc")
    if enc:
        sealed["target_config.password"] = enc
    unsealed = {}
    for path in SECRET_FIELDS[1:]:
        plain = take_field(document, path)
        if plain:
            unsealed[path] = plain
    return {"document": document, "sealed": sealed, "unsealed": unsealed}


@event
class TaskCreated(DomainEvent):
    event_type = "task.created"
    schema_version = 2
    request_id: str
    task: TaskSpec


@event
class TaskUpdated(DomainEvent):
    event_type = "task.updated"
    schema_version = 2
    task: TaskSpec


@registry.upcaster("task.created", 1)
@registry.upcaster("task.updated", 1)
def _task_v1(payload: JsonDict) -> JsonDict:
    return {**payload, "task": spec_from_v1(payload["task"])}


@event
class TaskDeleted(DomainEvent):
    event_type = "task.deleted"


@event
class SubtaskStageChanged(DomainEvent):
    """A subtask's stage as the user or the runner decided it (Running, Paused, Finished)."""

    event_type = "task.subtask_stage_changed"
    source_name: str
    stage: str
    unit: str = ""
    error_msg: str = ""


@event
class DumpPlanned(DomainEvent):
    """The chunk plan and snapshot position of a subtask's dump; kept so that a resumed
    dump uses the very same chunks (their indexes are the checkpoint ids)."""

    event_type = "task.dump_planned"
    source_name: str
    chunks: list[dict[str, Any]]
    binlog_name: str = ""
    binlog_pos: int = 0
    binlog_gtid: str = ""


@event
class SubtaskProgress(DomainEvent):
    """Coarse progress, recorded at most every few seconds (not per row or chunk)."""

    event_type = "task.subtask_progress"
    source_name: str
    unit: str
    finished_chunks: int
    total_chunks: int
    finished_rows: int
    finished_bytes: int


@event
class SubtaskMetaRemoved(DomainEvent):
    """remove_meta on start: the subtask's checkpoints were dropped and its plan forgotten."""

    event_type = "task.subtask_meta_removed"
    source_name: str


@event
class DumpSnapshotTaken(DomainEvent):
    """A consistent snapshot the dump read from (a resumed dump takes a new one). For
    `all`, the sync starts at the first snapshot's position and stays in safe mode up to
    the last one's: every chunk was read somewhere between the two."""

    event_type = "task.dump_snapshot_taken"
    source_name: str
    binlog_name: str
    binlog_pos: int
    binlog_gtid: str = ""
