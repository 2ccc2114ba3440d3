"""The FastAPI app under /api/v1 and its Ray Serve deployment."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI
from ray import serve

from serve_app import errors
from serve_app.auth import AuthGate
from serve_app.readmodel import read_model
from serve_app.routes import cluster, sources, tasks

API_PREFIX = "/api/v1"

log = logging.getLogger("dmray.api")


def build_app() -> FastAPI:
    app = FastAPI(
        title="DM OpenAPI Spec",
        version="1.0.0",
        description="dmray: TiDB Data Migration (DM) v1 compatible API on Ray",
        docs_url=f"{API_PREFIX}/docs",
        openapi_url=f"{API_PREFIX}/dm.json",
        redoc_url=None,
    )
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(cluster.router)
    api.include_router(sources.router)
    api.include_router(tasks.router)
    app.include_router(api)
    errors.install(app)
    errors.document_errors(app)
    app.add_middleware(AuthGate, policy=_auth_policy)
    return app


async def _auth_policy() -> tuple[bool, dict[str, str]]:
    auth = (await read_model.current()).get("auth") or {}
    return bool(auth.get("required")), dict(auth.get("digests") or {})


app = build_app()


@serve.deployment(name="dmray-api", ray_actor_options={"num_cpus": 0},
                  max_ongoing_requests=200,
                  # An access log line per request costs more CPU than the request.
                  logging_config={"enable_access_log": False, "log_level": "WARNING"})
@serve.ingress(app)
class DMApi:
    """Each replica registers its node as a DM master (API node) with the coordinator."""

    def __init__(self, port: int):
        from actors.bootstrap import register_master
        from serve_app.deps import coordinator_handle

        try:
            self.master = register_master(coordinator_handle(), port)
        except Exception as exc:  # the API still serves; the coordinator may be restarting
            log.warning("could not register master: %s", type(exc).__name__)
            self.master = ""
