"""/tasks: create, read, update, delete, start/stop, status, migrate targets, templates
and converters."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from actors.remote import call
from actors.task_spec import masked_task
from domain.task_models import (
    ConverterTaskRequest,
    ConverterTaskResponse,
    CreateTaskRequest,
    GetTaskListResponse,
    GetTaskMigrateTargetsResponse,
    GetTaskStatusResponse,
    OperateTaskResponse,
    OperateTaskTableStructureRequest,
    StartTaskRequest,
    StopTaskRequest,
    Task,
    TaskTableStructure,
    TaskTemplateImportResponse,
    TaskTemplateRequest,
    UpdateTaskRequest,
)
from errors import API_ERROR
from serve_app.deps import CoordinatorDep
from serve_app.errors import EMPTY_200

router = APIRouter(prefix="/tasks", tags=["task"])


# Fixed paths first: /tasks/templates and /tasks/converters are not task names.
@router.post("/converters", operation_id="DMAPIConvertTask",
             responses={200: {"model": ConverterTaskResponse}})
async def convert_task(req: ConverterTaskRequest) -> Any:
    """Task <-> DM's task YAML. Secrets never come back: both forms carry the mask."""
    from domain.task_convert import task_to_yaml, yaml_to_task

    task = req.task if req.task is not None else \
        yaml_to_task(req.task_config_file) if req.task_config_file else None
    if task is not None:
        shown = Task.model_validate(masked_task(task))
        return {"task": shown.dump(), "task_config_file": task_to_yaml(shown)}
    raise API_ERROR("request must contain task or task_config_file")


@router.post("/templates", status_code=201, operation_id="DMAPICreateTaskTemplate",
             responses={201: {"model": Task}})
async def create_template(task: Task, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.create_template.remote(task))


@router.get("/templates", operation_id="DMAPIGetTaskTemplateList",
             responses={200: {"model": GetTaskListResponse}})
async def list_templates(coordinator: CoordinatorDep) -> Any:
    data = await call(coordinator.list_templates.remote())
    return {"total": len(data), "data": data}


@router.post("/templates/import", status_code=202, operation_id="DMAPIImportTaskTemplate",
             responses={202: {"model": TaskTemplateImportResponse}})
async def import_templates(req: TaskTemplateRequest, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.import_templates.remote(req.overwrite))


@router.get("/templates/{task_name}", operation_id="DMAPIGetTaskTemplate",
             responses={200: {"model": Task}})
async def get_template(task_name: str, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.get_template.remote(task_name))


@router.put("/templates/{task_name}", operation_id="DMAPUpdateTaskTemplate",
             responses={200: {"model": Task}})
async def update_template(task_name: str, task: Task, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.update_template.remote(task_name, task))


@router.delete("/templates/{task_name}", status_code=204,
               operation_id="DMAPIDeleteTaskTemplate")
async def delete_template(task_name: str, coordinator: CoordinatorDep) -> Response:
    await call(coordinator.delete_template.remote(task_name))
    return Response(status_code=204)


@router.post("", status_code=201, operation_id="DMAPICreateTask",
             responses={201: {"model": OperateTaskResponse}})
async def create_task(req: CreateTaskRequest, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.create_task.remote(uuid.uuid4().hex, req.task))


@router.get("", operation_id="DMAPIGetTaskList",
             responses={200: {"model": GetTaskListResponse}})
async def list_tasks(coordinator: CoordinatorDep, with_status: bool = False,
                     stage: str | None = None,
                     source_name_list: Annotated[list[str] | None, Query()] = None) -> Any:
    data = await call(coordinator.list_tasks.remote(with_status, stage, source_name_list))
    return {"total": len(data), "data": data}


@router.get("/{task_name}", operation_id="DMAPIGetTask",
             responses={200: {"model": Task}})
async def get_task(task_name: str, coordinator: CoordinatorDep,
                   with_status: bool = False) -> Any:
    return await call(coordinator.get_task.remote(task_name, with_status))


@router.put("/{task_name}", operation_id="DMAPIUpdateTask",
             responses={200: {"model": OperateTaskResponse}})
async def update_task(task_name: str, req: UpdateTaskRequest,
                      coordinator: CoordinatorDep) -> Any:
    if req.task.name != task_name:
        raise API_ERROR(f"task name in body {req.task.name!r} does not match the path "
                        f"{task_name!r}")
    return await call(coordinator.update_task.remote(req.task))


@router.delete("/{task_name}", status_code=204, operation_id="DMAPIDeleteTask")
async def delete_task(task_name: str, coordinator: CoordinatorDep, force: bool = False,
                      keep_meta: bool = False) -> Response:
    await call(coordinator.delete_task.remote(task_name, force, keep_meta))
    return Response(status_code=204)


@router.post("/{task_name}/start", operation_id="DMAPIStartTask",
             response_class=Response, responses=EMPTY_200)
async def start_task(task_name: str, coordinator: CoordinatorDep,
                     req: Annotated[StartTaskRequest | None, Body()] = None) -> Response:
    # No body (and no Content-Type) means: all sources, defaults.
    await call(coordinator.start_task.remote(task_name, req or StartTaskRequest()))
    return Response(status_code=200)


@router.post("/{task_name}/stop", operation_id="DMAPIStopTask",
             response_class=Response, responses=EMPTY_200)
async def stop_task(task_name: str, coordinator: CoordinatorDep,
                    req: Annotated[StopTaskRequest | None, Body()] = None) -> Response:
    await call(coordinator.stop_task.remote(task_name, req.source_name_list if req else None))
    return Response(status_code=200)


@router.get("/{task_name}/status", operation_id="DMAPIGetTaskStatus",
             responses={200: {"model": GetTaskStatusResponse}})
async def task_status(task_name: str, coordinator: CoordinatorDep,
                      source_name_list: Annotated[list[str] | None, Query()] = None) -> Any:
    data = await call(coordinator.task_status.remote(task_name, source_name_list))
    return {"total": len(data), "data": data}


@router.get("/{task_name}/sources/{source_name}/migrate_targets",
            operation_id="DMAPIGetTaskMigrateTargets",
             responses={200: {"model": GetTaskMigrateTargetsResponse}})
async def migrate_targets(task_name: str, source_name: str, coordinator: CoordinatorDep,
                          schema_pattern: str | None = None,
                          table_pattern: str | None = None) -> Any:
    data = await call(coordinator.task_migrate_targets.remote(
        task_name, source_name, schema_pattern, table_pattern))
    return {"total": len(data), "data": data}


# --- schema tracker of a subtask ---------------------------------------------------------
@router.get("/{task_name}/sources/{source_name}/schemas",
            operation_id="DMAPIGetSchemaListByTaskAndSource",
             responses={200: {"model": list[str]}})
async def tracked_schemas(task_name: str, source_name: str,
                          coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.task_schema.remote(task_name, source_name, "list", None,
                                                     None, None))


@router.get("/{task_name}/sources/{source_name}/schemas/{schema_name}",
            operation_id="DMAPIGetTableListByTaskAndSource",
             responses={200: {"model": list[str]}})
async def tracked_tables(task_name: str, source_name: str, schema_name: str,
                         coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.task_schema.remote(task_name, source_name, "list",
                                                     schema_name, None, None))


@router.get("/{task_name}/sources/{source_name}/schemas/{schema_name}/{table_name}",
            operation_id="DMAPIGetTableStructure",
             responses={200: {"model": TaskTableStructure}})
async def tracked_table(task_name: str, source_name: str, schema_name: str, table_name: str,
                        coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.task_schema.remote(task_name, source_name, "get",
                                                     schema_name, table_name, None))


@router.put("/{task_name}/sources/{source_name}/schemas/{schema_name}/{table_name}",
            operation_id="DMAPIOperateTableStructure",
             response_class=Response, responses=EMPTY_200)
async def set_tracked_table(task_name: str, source_name: str, schema_name: str,
                            table_name: str, req: OperateTaskTableStructureRequest,
                            coordinator: CoordinatorDep) -> Response:
    await call(coordinator.task_schema.remote(task_name, source_name, "put", schema_name,
                                              table_name, req.model_dump()))
    return Response(status_code=200)


@router.delete("/{task_name}/sources/{source_name}/schemas/{schema_name}/{table_name}",
               status_code=204, operation_id="DMAPIDeleteTableStructure")
async def delete_tracked_table(task_name: str, source_name: str, schema_name: str,
                               table_name: str, coordinator: CoordinatorDep) -> Response:
    await call(coordinator.task_schema.remote(task_name, source_name, "delete", schema_name,
                                              table_name, None))
    return Response(status_code=204)
