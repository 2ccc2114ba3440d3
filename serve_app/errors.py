"""Error envelope: every failure is HTTP 400 `{error_msg, error_code}` in DM's format."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray.exceptions import RayError

from actors.remote import unwrap
from events.errors import API_ERROR, DMError, scrub

log = logging.getLogger("dmray.api")


class NotFound(Exception):
    """DM answers a bare 404 for GET /sources/{name} of an unknown source."""


def error_response(err: DMError) -> JSONResponse:
    return JSONResponse(status_code=400,
                        content={"error_msg": str(err), "error_code": err.code})


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return "request body is invalid: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(DMError)
    async def _dm(_: Request, exc: DMError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(API_ERROR(scrub(_validation_message(exc))))

    @app.exception_handler(NotFound)
    async def _nf(_: Request, __: NotFound) -> Response:
        return Response(status_code=404)

    @app.exception_handler(RayError)
    async def _ray(_: Request, exc: RayError) -> JSONResponse:
        inner = unwrap(exc)
        if isinstance(inner, DMError):
            return error_response(inner)
        # An actor died or could not be reached: say so, without its remote traceback.
        log.warning("actor call failed: %s", type(inner).__name__)
        return error_response(API_ERROR(f"internal actor error: {type(inner).__name__}, "
                                        "please retry"))

    @app.exception_handler(Exception)
    async def _any(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s", scrub(f"{type(exc).__name__}: {exc}"))
        return error_response(API_ERROR(scrub(f"{type(exc).__name__}: {exc}")))
