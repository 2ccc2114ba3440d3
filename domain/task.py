"""A task's own state, folded from its stream: the stored Task and its subtasks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from events.base import DomainEvent, StreamState
from events.task import (
    DumpPlanned,
    DumpSnapshotTaken,
    SubtaskMetaRemoved,
    SubtaskProgress,
    SubtaskStageChanged,
    TaskCreated,
    TaskDeleted,
    TaskSpec,
    TaskUpdated,
)

STOPPED, RUNNING, PAUSED, FINISHED = "Stopped", "Running", "Paused", "Finished"


class SubtaskState(BaseModel):
    source_name: str
    stage: str = STOPPED
    unit: str = ""
    error_msg: str = ""
    chunks: list[dict[str, Any]] | None = None  # the dump plan, once made
    binlog_name: str = ""
    binlog_pos: int = 0
    binlog_gtid: str = ""
    finished_chunks: int = 0
    total_chunks: int = 0
    finished_rows: int = 0
    finished_bytes: int = 0
    # `all`: the last dump snapshot's position (safe mode up to here after the dump)
    last_binlog_name: str = ""
    last_binlog_pos: int = 0
    last_binlog_gtid: str = ""


class TaskState(StreamState):
    state_type = "task"
    state_version = 2

    exists: bool = False
    request_id: str = ""
    spec: TaskSpec | None = None
    subtasks: dict[str, SubtaskState] = {}

    def apply(self, ev: DomainEvent) -> None:
        match ev:
            case TaskCreated():
                self.exists, self.request_id, self.spec = True, ev.request_id, ev.task
                self.subtasks = {s: SubtaskState(source_name=s) for s in ev.task.sources}
            case TaskUpdated():
                self.spec = ev.task
                keep = self.subtasks
                self.subtasks = {s: keep.get(s) or SubtaskState(source_name=s)
                                 for s in ev.task.sources}
            case TaskDeleted():
                self.exists, self.spec, self.subtasks = False, None, {}
            case SubtaskStageChanged():
                st = self.subtasks.get(ev.source_name)
                if st is not None:
                    st.stage, st.error_msg = ev.stage, ev.error_msg
                    if ev.unit:
                        st.unit = ev.unit
            case DumpPlanned():
                st = self.subtasks.get(ev.source_name)
                if st is not None:
                    st.chunks = ev.chunks
                    st.binlog_name, st.binlog_pos = ev.binlog_name, ev.binlog_pos
                    st.binlog_gtid = ev.binlog_gtid
            case DumpSnapshotTaken():
                st = self.subtasks.get(ev.source_name)
                if st is not None:
                    if not st.binlog_name:
                        st.binlog_name, st.binlog_pos = ev.binlog_name, ev.binlog_pos
                        st.binlog_gtid = ev.binlog_gtid
                    st.last_binlog_name, st.last_binlog_pos = ev.binlog_name, ev.binlog_pos
                    st.last_binlog_gtid = ev.binlog_gtid
            case SubtaskProgress():
                st = self.subtasks.get(ev.source_name)
                if st is not None:
                    st.finished_chunks, st.finished_rows = ev.finished_chunks, ev.finished_rows
                    st.total_chunks = ev.total_chunks
                    st.finished_bytes = ev.finished_bytes
            case SubtaskMetaRemoved():
                if ev.source_name in self.subtasks:
                    self.subtasks[ev.source_name] = SubtaskState(source_name=ev.source_name)

    def source_names(self) -> list[str]:
        return list(self.subtasks)
