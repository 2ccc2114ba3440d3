"""/cluster: info, masters, workers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from actors.remote import call
from domain.models import ClusterInfo, ClusterMaster, ClusterTopology, ClusterWorker
from serve_app.deps import CoordinatorDep
from serve_app.readmodel import read_model

router = APIRouter(prefix="/cluster", tags=["cluster"])


class GetClusterMasterListResponse(BaseModel):
    total: int
    data: list[ClusterMaster]


class GetClusterWorkerListResponse(BaseModel):
    total: int
    data: list[ClusterWorker]


@router.get("/info", response_model=ClusterInfo, response_model_exclude_none=True,
            operation_id="DMAPIGetClusterInfo")
async def get_cluster_info(coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.cluster_info.remote())


@router.put("/info", response_model=ClusterInfo, response_model_exclude_none=True,
            operation_id="DMAPIUpdateClusterInfo")
async def update_cluster_info(topology: ClusterTopology, coordinator: CoordinatorDep) -> Any:
    return await call(coordinator.set_topology.remote(topology.model_dump(exclude_none=True)))


@router.get("/masters", response_model=GetClusterMasterListResponse,
            operation_id="DMAPIGetClusterMasterList")
async def list_masters(coordinator: CoordinatorDep) -> Any:
    data = await call(coordinator.list_masters.remote())
    return {"total": len(data), "data": data}


@router.delete("/masters/{master_name}", status_code=204,
               operation_id="DMAPIOfflineMasterNode")
async def delete_master(master_name: str, coordinator: CoordinatorDep) -> Response:
    await call(coordinator.remove_master.remote(master_name))
    return Response(status_code=204)


@router.get("/workers", response_model=GetClusterWorkerListResponse,
            operation_id="DMAPIGetClusterWorkerList")
async def list_workers(coordinator: CoordinatorDep) -> Any:
    data = (await read_model.current())["workers"]
    return {"total": len(data), "data": data}


@router.delete("/workers/{worker_name}", status_code=204,
               operation_id="DMAPIOfflineWorkerNode")
async def delete_worker(worker_name: str, coordinator: CoordinatorDep) -> Response:
    await call(coordinator.remove_worker.remote(worker_name))
    await read_model.refresh()
    return Response(status_code=204)

