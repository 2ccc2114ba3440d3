"""Error envelope: every failure is HTTP 400 `{error_msg, error_code}` in DM's format."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray.exceptions import RayError
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.remote import unwrap
from errors import API_ERROR, DMError, scrub

log = logging.getLogger("dmray.api")


class NotFound(Exception):
    """DM answers a bare 404 for GET /sources/{name} of an unknown source."""


def error_response(err: DMError) -> JSONResponse:
    return JSONResponse(status_code=400,
                        content={"error_msg": str(err), "error_code": err.code})


JSON_HINT = "send it with the header Content-Type: application/json"
# Pydantic's error types for "the body as a whole is not an object".
_NOT_AN_OBJECT = {"model_attributes_type", "model_type", "dict_type"}


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def _body_message(err: dict[str, Any], content_type: str) -> str | None:
    """What is wrong with the body as a whole (not a field in it), said plainly."""
    loc = tuple(err.get("loc", ()))
    kind = err.get("type")
    if loc == ("body",) and kind in _NOT_AN_OBJECT:
        value = err.get("input")
        if isinstance(value, bytes | bytearray):
            # Not parsed as JSON: FastAPI parses a body only when its Content-Type says JSON
            # (curl -d sends application/x-www-form-urlencoded).
            got = (f"it came with Content-Type: {content_type[:100]}" if content_type
                   else "it came without a Content-Type header")
            return f"request body must be a JSON object; {JSON_HINT} ({got})"
        return f"request body must be a JSON object, not {_json_kind(value)}"
    if loc == ("body",) and kind == "missing":
        return f"request body is missing: it must be a JSON object; {JSON_HINT}"
    if loc[:1] == ("body",) and kind == "json_invalid":
        reason = (err.get("ctx") or {}).get("error") or err.get("msg", "invalid")
        where = f" at position {loc[1]}" if len(loc) > 1 else ""
        return f"request body is not valid JSON: {reason}{where}"
    return None


def _validation_message(exc: RequestValidationError, content_type: str = "") -> str:
    parts = []
    for e in exc.errors():
        whole = _body_message(e, content_type)
        if whole is not None:
            return whole
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return "request body is invalid: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(DMError)
    async def _dm(_: Request, exc: DMError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        return error_response(API_ERROR(scrub(_validation_message(exc, content_type))))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Raised by the framework itself: a body that is not even text ("There was an error
        # parsing the body"), an unknown path (404) or method (405). DM's body all the same.
        if exc.status_code == 400:
            return error_response(API_ERROR(f"request body is not valid JSON: {exc.detail}"))
        err = API_ERROR(str(exc.detail))
        return JSONResponse(status_code=exc.status_code,
                            content={"error_msg": str(err), "error_code": err.code},
                            headers=getattr(exc, "headers", None))

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


# --- what dm.json says of it -----------------------------------------------------------------
# start, stop, enable, disable, relay, transfer, PUT table structure: 200, empty body (DM).
EMPTY_200: dict[int | str, dict[str, Any]] = {
    200: {"description": "Done; the body is empty, as DM's"}}

_ERROR_SCHEMA = {
    "type": "object", "required": ["error_msg", "error_code"],
    "properties": {"error_msg": {"type": "string"}, "error_code": {"type": "integer"}},
    "description": "DM's error envelope: error_msg is `[code=N:class=...:scope=...:"
                   "level=...], Message: ...`",
}
_ERROR_RESPONSES = {
    "400": "The operation failed, or the request is invalid (DM answers 400 for both)",
    "401": "No token, or one that is not valid, while the server requires one",
    "403": "A state-changing request from a web page of another site",
    "503": "The control plane cannot be reached right now (a restart): retry",
}


def document_errors(app: FastAPI) -> None:
    """dm.json as the API behaves: every operation answers its errors with HTTP 400 (and
    401/403/503 from the gate) in DM's ErrorWithMessage body; FastAPI's 422 is never
    sent."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        ref = {"$ref": "#/components/schemas/ErrorWithMessage"}
        for path, ops in schema.get("paths", {}).items():
            for method, op in ops.items():
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                for code, text in _ERROR_RESPONSES.items():
                    responses[code] = {"description": text,
                                       "content": {"application/json": {"schema": ref}}}
                if method == "get" and path.endswith("/sources/{source_name}"):
                    responses["404"] = {"description": "No such source; the body is empty"}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["ErrorWithMessage"] = _ERROR_SCHEMA
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
