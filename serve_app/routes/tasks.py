"""/tasks: create, read, update, delete, start/stop, status, migrate targets, templates
and converters."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from actors.remote import call
from domain.task_models import (
    ConverterTaskRequest,
    CreateTaskRequest,
    OperateTaskTableStructureRequest,
    StartTaskRequest,
    StopTaskRequest,
    Task,
    TaskTemplateRequest,
    UpdateTaskRequest,
)
from errors import API_ERROR
from serve_app.deps import CoordinatorDep

router = APIRouter(prefix="/tasks", tags=["task"])


def _task_body(task: Task) -> dict[str, Any]:
    return task.dump()


# Fixed paths first: /tasks/templates and /tasks/converters are not task names.
@router.post("/converters", operation_id="DMAPIConvertTask")
async def convert_task(req: ConverterTaskRequest) -> Any:
    from domain.task_convert import task_to_yaml, yaml_to_task

    if req.task is not None:
        return {"task": _task_body(req.task), "task_config_file": task_to_yaml(req.task)}
    if req.task_config_file:
        task = yaml_to_task(req.task_config_file)
        return {"task": _task_body(task), "task_config_file": req.task_config_file}
    raise API_ERROR("request must contain task or task_config_file")


@router.post("/templates", status_code=201, operation_id="DMAPICreateTaskTemplate")
async def create_template(task: Task, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.create_template.remote(task))


@router.get("/templates", operation_id="DMAPIGetTaskTemplateList")
async def list_templates(coordinator: CoordinatorDep) -> Any:
    data = await call(coordinator.list_templates.remote())
    return {"total": len(data), "data": data}


@router.post("/templates/import", status_code=202, operation_id="DMAPIImportTaskTemplate")
async def import_templates(req: TaskTemplateRequest, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.import_templates.remote(req.overwrite))


@router.get("/templates/{task_name}", operation_id="DMAPIGetTaskTemplate")
async def get_template(task_name: str, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.get_template.remote(task_name))


@router.put("/templates/{task_name}", operation_id="DMAPUpdateTaskTemplate")
async def update_template(task_name: str, task: Task, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.update_template.remote(task_name, task))


@router.delete("/templates/{task_name}", status_code=204,
               operation_id="DMAPIDeleteTaskTemplate")
async def delete_template(task_name: str, coordinator: CoordinatorDep) -> Response:
    await call(coordinator.delete_template.remote(task_name))
    return Response(status_code=204)


@router.post("", status_code=201, operation_id="DMAPICreateTask")
async def create_task(req: CreateTaskRequest, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.create_task.remote(uuid.uuid4().hex, req.task))


@router.get("", operation_id="DMAPIGetTaskList")
async def list_tasks(coordinator: CoordinatorDep, with_status: bool = False,
                     stage: str | None = None,
                     source_name_list: Annotated[list[str] | None, Query()] = None) -> Any:
    data = await call(coordinator.list_tasks.remote(with_status, stage, source_name_list))
    return {"total": len(data), "data": data}


@router.get("/{task_name}", operation_id="DMAPIGetTask")
async def get_task(task_name: str, coordinator: CoordinatorDep,
                   with_status: bool = False) -> Any:
    return await call(coordinator.get_task.remote(task_name, with_status))


@router.put("/{task_name}", operation_id="DMAPIUpdateTask")
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


@router.post("/{task_name}/start", operation_id="DMAPIStartTask")
async def start_task(task_name: str, coordinator: CoordinatorDep,
                     req: Annotated[StartTaskRequest | None, Body()] = None) -> Response:
    # No body (and no Content-Type) means: all sources, defaults.
    await call(coordinator.start_task.remote(task_name, req or StartTaskRequest()))
    return Response(status_code=200)


@router.post("/{task_name}/stop", operation_id="DMAPIStopTask")
async def stop_task(task_name: str, coordinator: CoordinatorDep,
                    req: Annotated[StopTaskRequest | None, Body()] = None) -> Response:
    await call(coordinator.stop_task.remote(task_name, req.source_name_list if req else None))
    return Response(status_code=200)


@router.get("/{task_name}/status", operation_id="DMAPIGetTaskStatus")
async def task_status(task_name: str, coordinator: CoordinatorDep,
                      source_name_list: Annotated[list[str] | None, Query()] = None) -> Any:
    data = await call(coordinator.task_status.remote(task_name, source_name_list))
    return {"total": len(data), "data": data}


@router.get("/{task_name}/sources/{source_name}/migrate_targets",
            operation_id="DMAPIGetTaskMigrateTargets")
async def migrate_targets(task_name: str, source_name: str, coordinator: CoordinatorDep,
                          schema_pattern: str | None = None,
                          table_pattern: str | None = None) -> Any:
    data = await call(coordinator.task_migrate_targets.remote(
        task_name, source_name, schema_pattern, table_pattern))
    return {"total": len(data), "data": data}


# --- schema tracker of a subtask ---------------------------------------------------------
@router.get("/{task_name}/sources/{source_name}/schemas",
            operation_id="DMAPIGetSchemaListByTaskAndSource")
async def tracked_schemas(task_name: str, source_name: str,
                          coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.task_schema.remote(task_name, source_name, "list", None,
                                                     None, None))


@router.get("/{task_name}/sources/{source_name}/schemas/{schema_name}",
            operation_id="DMAPIGetTableListByTaskAndSource")
async def tracked_tables(task_name: str, source_name: str, schema_name: str,
                         coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.task_schema.remote(task_name, source_name, "list",
                                                     schema_name, None, None))


@router.get("/{task_name}/sources/{source_name}/schemas/{schema_name}/{table_name}",
            operation_id="DMAPIGetTableStructure")
async def tracked_table(task_name: str, source_name: str, schema_name: str, table_name: str,
                        coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.task_schema.remote(task_name, source_name, "get",
                                                     schema_name, table_name, None))


@router.put("/{task_name}/sources/{source_name}/schemas/{schema_name}/{table_name}",
            operation_id="DMAPIOperateTableStructure")
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
