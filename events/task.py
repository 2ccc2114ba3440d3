"""Events of a task's stream, owned by its task actor. The task body is stored as DM's
Task document with the target password encrypted (`target_config.password_enc`)."""

from __future__ import annotations

from typing import Any

from events.base import DomainEvent, event


def task_stream(name: str) -> str:
    return f"task:{name}"


@event
class TaskCreated(DomainEvent):
    event_type = "task.created"
    request_id: str
    task: dict[str, Any]


@event
class TaskUpdated(DomainEvent):
    event_type = "task.updated"
    task: dict[str, Any]


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
