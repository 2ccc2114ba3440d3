"""DM v1 OpenAPI Task schema models, with DM's field names (strict, as Go decodes JSON)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

from domain.models import Security
from domain.names import BinlogFile, MetaSchema, SourceName, TaskName

TaskMode = Literal["full", "incremental", "all", "dump", "load"]
TaskStage = Literal["Stopped", "Running", "Finished", "Paused"]
OnDuplicate = Literal["replace", "error", "ignore"]


def drop_blank_items(items: list[str]) -> list[str]:
    """A list of names without its empty or blank entries."""
    return [item for item in items if item.strip()]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TaskTargetSession(_Model):
    foreign_key_checks: Literal["0", "1"] | None = None


class TaskTargetDataBase(_Model):
    host: StrictStr = Field(min_length=1)
    port: StrictInt = Field(ge=1, le=65535)
    user: StrictStr = Field(min_length=1)
    password: StrictStr
    security: Security | None = None
    session: TaskTargetSession | None = None


class TaskBinLogFilterRule(_Model):
    ignore_event: list[StrictStr] | None = None
    ignore_sql: list[StrictStr] | None = None


class TaskTableMigrateRuleSource(_Model):
    source_name: SourceName
    schema_: StrictStr = Field(alias="schema", min_length=1)
    # May be empty: the whole schema, as DM's converter writes a `do-dbs` entry.
    table: StrictStr


class TaskTableMigrateRuleTarget(_Model):
    schema_: StrictStr | None = Field(default=None, alias="schema")
    table: StrictStr | None = None


class TaskTableMigrateRule(_Model):
    source: TaskTableMigrateRuleSource
    target: TaskTableMigrateRuleTarget | None = None
    binlog_filter_rule: list[StrictStr] | None = None


class TaskFullMigrateConf(_Model):
    export_threads: StrictInt = Field(default=4, ge=1, le=256)
    import_threads: StrictInt = Field(default=16, ge=1, le=256)
    data_dir: StrictStr | None = None
    consistency: Literal["auto", "none", "flush", "snapshot", "lock"] | None = None
    import_mode: Literal["logical", "physical", "import-into"] | None = None
    sorting_dir: StrictStr | None = None
    disk_quota: StrictStr | None = None
    checksum: Literal["required", "optional", "off"] | None = None
    analyze: Literal["required", "optional", "off"] | None = None
    range_concurrency: StrictInt | None = Field(default=None, ge=0)
    compress_kv_pairs: StrictStr | None = Field(default=None, alias="compress-kv-pairs")
    pd_addr: StrictStr | None = None
    security: Security | None = None
    on_duplicate_logical: OnDuplicate | None = None
    on_duplicate_physical: Literal["none", "manual"] | None = None


class TaskIncrMigrateConf(_Model):
    repl_threads: StrictInt = Field(default=16, ge=1, le=256)
    repl_batch: StrictInt = Field(default=100, ge=1, le=100000)
    safe_mode: StrictBool = False


class TaskSourceConf(_Model):
    source_name: SourceName
    binlog_name: BinlogFile | None = None
    binlog_pos: StrictInt | None = Field(default=None, ge=0)
    binlog_gtid: StrictStr | None = None


class TaskSourceConfig(_Model):
    full_migrate_conf: TaskFullMigrateConf | None = None
    incr_migrate_conf: TaskIncrMigrateConf | None = None
    source_conf: list[TaskSourceConf] = Field(min_length=1)


class Task(_Model):
    name: TaskName
    task_mode: TaskMode
    shard_mode: Literal["pessimistic", "optimistic"] | None = None
    strict_optimistic_shard_mode: StrictBool = False
    meta_schema: MetaSchema = "dm_meta"
    timezone: StrictStr | None = None
    enhance_online_schema_change: StrictBool = True
    on_duplicate: OnDuplicate = "replace"
    target_config: TaskTargetDataBase
    binlog_filter_rule: dict[str, TaskBinLogFilterRule] | None = None
    table_migrate_rule: list[TaskTableMigrateRule]
    source_config: TaskSourceConfig
    status_list: list[dict[str, Any]] | None = None
    ignore_checking_items: list[StrictStr] | None = None

    @field_validator("ignore_checking_items")
    @classmethod
    def _drop_blank_items(cls, items: list[str] | None) -> list[str] | None:
        # DM's own clients send empty items (`["version", ""]`): they name nothing.
        return None if items is None else drop_blank_items(items)

    def dump(self) -> dict[str, Any]:
        """The task as stored and returned: DM's field names, no status."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"status_list"})


class CreateTaskRequest(_Model):
    task: Task


class UpdateTaskRequest(_Model):
    task: Task


class StartTaskRequest(_Model):
    remove_meta: StrictBool = False
    source_name_list: list[StrictStr] | None = None
    start_time: StrictStr | None = None
    safe_mode_time_duration: StrictStr | None = None


class StopTaskRequest(_Model):
    timeout_duration: StrictStr | None = None
    source_name_list: list[StrictStr] | None = None


class ConverterTaskRequest(_Model):
    task: Task | None = None
    task_config_file: StrictStr | None = None


class TaskTemplateRequest(_Model):
    overwrite: StrictBool = False


class OperateTaskTableStructureRequest(_Model):
    schema_source: Literal["sql", "upstream", "downstream"] = "sql"
    sql_content: StrictStr | None = None
    flush: StrictBool = True
    sync: StrictBool = True


# --- responses (what dm.json declares; the routes answer plain dicts of these shapes) ----
class OperateTaskResponse(_Model):
    task: Task
    check_result: StrictStr


class GetTaskListResponse(_Model):
    total: StrictInt
    data: list[Task]


class SubTaskStatus(_Model):
    name: StrictStr
    source_name: StrictStr
    worker_name: StrictStr | None = None
    stage: StrictStr
    unit: StrictStr | None = None
    error_msg: StrictStr | None = None
    unresolved_ddl_lock_id: StrictStr | None = None
    dump_status: dict[str, Any] | None = None
    load_status: dict[str, Any] | None = None
    sync_status: dict[str, Any] | None = None


class GetTaskStatusResponse(_Model):
    total: StrictInt
    data: list[SubTaskStatus]


class TaskMigrateTarget(_Model):
    source_schema: StrictStr
    source_table: StrictStr
    target_schema: StrictStr
    target_table: StrictStr


class GetTaskMigrateTargetsResponse(_Model):
    total: StrictInt
    data: list[TaskMigrateTarget]


class TaskTableStructure(_Model):
    schema_name: StrictStr
    table_name: StrictStr
    schema_create_sql: StrictStr


class ConverterTaskResponse(_Model):
    task: Task
    task_config_file: StrictStr


class TaskTemplateFailure(_Model):
    task_name: StrictStr
    error_msg: StrictStr


class TaskTemplateImportResponse(_Model):
    success_task_list: list[StrictStr]
    failed_task_list: list[TaskTemplateFailure]
