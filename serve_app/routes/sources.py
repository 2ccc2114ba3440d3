"""/sources: create, read, update, delete, enable/disable, status, transfer, schemas."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from actors.remote import call
from domain.models import (
    CreateSourceRequest,
    DisableRelayRequest,
    EnableRelayRequest,
    PurgeRelayRequest,
    Source,
    SourceStatus,
    UpdateSourceRequest,
    WorkerNameRequest,
)
from errors import API_ERROR, SOURCE_NOT_EXISTS
from serve_app.deps import CoordinatorDep
from serve_app.errors import EMPTY_200, NotFound
from serve_app.readmodel import read_model

router = APIRouter(prefix="/sources", tags=["source"])


class GetSourceListResponse(BaseModel):
    total: int
    data: list[Source]


class GetSourceStatusResponse(BaseModel):
    total: int
    data: list[SourceStatus]


def _shown(view: dict[str, Any], with_status: bool) -> dict[str, Any]:
    return view if with_status else {k: v for k, v in view.items() if k != "status_list"}


async def _model_source(name: str) -> dict[str, Any] | None:
    sources: dict[str, dict[str, Any]] = (await read_model.current())["sources"]
    return sources.get(name)


@router.post("", status_code=201, response_model=Source, response_model_exclude_none=True,
             operation_id="DMAPICreateSource")
async def create_source(req: CreateSourceRequest, coordinator: CoordinatorDep) -> Any:
    # One id per HTTP request: if Ray retries the call, the coordinator sees the same id.
    request_id = uuid.uuid4().hex
    view = await call(coordinator.create_source.remote(request_id, req.source,
                                                       req.worker_name))
    await read_model.refresh()
    return view


@router.get("", response_model=GetSourceListResponse, response_model_exclude_none=True,
            operation_id="DMAPIGetSourceList")
async def list_sources(coordinator: CoordinatorDep, with_status: bool = False,
                       enable_relay: bool | None = None) -> Any:
    sources = (await read_model.current())["sources"]
    data = [_shown(v, with_status) for _, v in sorted(sources.items())
            if enable_relay is None
            or bool(v["relay_config"].get("enable_relay")) == enable_relay]
    return {"total": len(data), "data": data}


@router.get("/{source_name}", response_model=Source, response_model_exclude_none=True,
            operation_id="DMAPIGetSource")
async def get_source(source_name: str, coordinator: CoordinatorDep,
                     with_status: bool = False) -> Any:
    view = await _model_source(source_name)
    if view is None:
        raise NotFound()
    return _shown(view, with_status)


@router.put("/{source_name}", response_model=Source, response_model_exclude_none=True,
            operation_id="DMAPIUpdateSource")
async def update_source(source_name: str, req: UpdateSourceRequest,
                        coordinator: CoordinatorDep) -> Any:
    # The path names the source; a body naming another is a mistake, not a rename.
    if req.source.source_name != source_name:
        raise API_ERROR(f"source name in body {req.source.source_name!r} does not match "
                        f"the path {source_name!r}")
    view = await call(coordinator.update_source.remote(req.source))
    await read_model.refresh()
    return view


@router.delete("/{source_name}", status_code=204, operation_id="DMAPIDeleteSource")
async def delete_source(source_name: str, coordinator: CoordinatorDep,
                        force: bool = False) -> Response:
    await call(coordinator.delete_source.remote(source_name, force))
    await read_model.refresh()
    return Response(status_code=204)


@router.post("/{source_name}/enable", operation_id="DMAPIEnableSource",
             response_class=Response, responses=EMPTY_200)
async def enable_source(source_name: str, coordinator: CoordinatorDep) -> Response:
    await call(coordinator.enable_source.remote(source_name))
    await read_model.refresh()
    return Response(status_code=200)


@router.post("/{source_name}/disable", operation_id="DMAPIDisableSource",
             response_class=Response, responses=EMPTY_200)
async def disable_source(source_name: str, coordinator: CoordinatorDep) -> Response:
    await call(coordinator.disable_source.remote(source_name))
    await read_model.refresh()
    return Response(status_code=200)


@router.get("/{source_name}/status", response_model=GetSourceStatusResponse,
            response_model_exclude_none=True, operation_id="DMAPIGetSourceStatus")
async def source_status(source_name: str, coordinator: CoordinatorDep) -> Any:
    view = await _model_source(source_name)
    if view is None:
        raise SOURCE_NOT_EXISTS(source_name)
    data = view["status_list"]
    if view.get("relay_config", {}).get("enable_relay"):
        # Relay progress moves all the time: ask the coordinator, not the read model.
        data = await call(coordinator.source_status.remote(source_name))
    return {"total": len(data), "data": data}


@router.post("/{source_name}/relay/enable", operation_id="DMAPIEnableRelay",
             response_class=Response, responses=EMPTY_200)
async def enable_relay(source_name: str, coordinator: CoordinatorDep,
                       req: EnableRelayRequest | None = None) -> Response:
    body = (req or EnableRelayRequest()).model_dump(exclude_none=True)
    await call(coordinator.enable_relay.remote(source_name, body))
    await read_model.refresh()
    return Response(status_code=200)


@router.post("/{source_name}/relay/disable", operation_id="DMAPIDisableRelay",
             response_class=Response, responses=EMPTY_200)
async def disable_relay(source_name: str, coordinator: CoordinatorDep,
                        req: DisableRelayRequest | None = None) -> Response:
    body = (req or DisableRelayRequest()).model_dump(exclude_none=True)
    await call(coordinator.disable_relay.remote(source_name, body))
    await read_model.refresh()
    return Response(status_code=200)


@router.post("/{source_name}/relay/purge", operation_id="DMAPIPurgeRelay",
             response_class=Response, responses=EMPTY_200)
async def purge_relay(source_name: str, req: PurgeRelayRequest,
                      coordinator: CoordinatorDep) -> Response:
    await call(coordinator.purge_relay.remote(source_name, req.model_dump(exclude_none=True)))
    return Response(status_code=200)


@router.post("/{source_name}/transfer", operation_id="DMAPITransferSource",
             response_class=Response, responses=EMPTY_200)
async def transfer_source(source_name: str, req: WorkerNameRequest,
                          coordinator: CoordinatorDep) -> Response:
    await call(coordinator.transfer_source.remote(source_name, req.worker_name))
    await read_model.refresh()
    return Response(status_code=200)


@router.get("/{source_name}/schemas", response_model=list[str],
            operation_id="DMAPIGetSourceSchemaList")
async def source_schemas(source_name: str, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.source_schemas.remote(source_name))


@router.get("/{source_name}/schemas/{schema_name}", response_model=list[str],
            operation_id="DMAPIGetSourceTableList")
async def source_tables(source_name: str, schema_name: str,
                        coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.source_tables.remote(source_name, schema_name))
