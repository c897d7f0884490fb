"""One error envelope for every failure: `{error: {code, message, details}, request_id}`.

A 422 names the field (`body.workspace_source.path`) in both the message and the details,
so a caller can fix the input without reading server logs.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def field_error(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
    return rid


def envelope(
    request: Request, status: int, code: str, message: str, details: Any = None, headers: dict | None = None
) -> JSONResponse:
    rid = request_id(request)
    body = {"error": {"code": code, "message": message, "details": details}, "request_id": rid}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "x-request-id": rid})


def _field_path(loc: tuple) -> str:
    # Drop pydantic's union-branch tags (e.g. "local", "function-after[...]") that mean nothing to callers.
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in ("local", "git", "github", "fresh")))]
    return ".".join(parts)


_RPC_STATUS = {
    RPCStatusCode.NOT_FOUND: (404, "not_found"),
    RPCStatusCode.INVALID_ARGUMENT: (422, "validation_error"),
    RPCStatusCode.OUT_OF_RANGE: (422, "validation_error"),
    RPCStatusCode.ALREADY_EXISTS: (409, "conflict"),
    RPCStatusCode.FAILED_PRECONDITION: (409, "conflict"),
    RPCStatusCode.UNAVAILABLE: (503, "temporal_unavailable"),
    RPCStatusCode.DEADLINE_EXCEEDED: (503, "temporal_unavailable"),
    RPCStatusCode.RESOURCE_EXHAUSTED: (503, "temporal_unavailable"),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return envelope(request, exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for err in exc.errors():
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            details.append({"field": _field_path(tuple(err.get("loc", ()))), "message": msg, "type": err.get("type")})
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "invalid request"
        return envelope(request, 422, "validation_error", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 409: "conflict"}.get(
            exc.status_code, "http_error"
        )
        # Keep the exception's headers: `Allow` on a 405, `WWW-Authenticate` on a 401.
        return envelope(request, exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RPCError)
    async def _temporal(request: Request, exc: RPCError) -> JSONResponse:
        # A route that lets Temporal judge an input (a run id, a query) must not turn its verdict into a 500.
        status, code = _RPC_STATUS.get(exc.status, (500, "internal_error"))
        return envelope(request, status, code, f"Temporal: {exc.message}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return envelope(request, 500, "internal_error", f"{type(exc).__name__}: {exc}")
