"""Every error as the OpenAI error shape `{"error": {"message", "type", "param", "code"}}`.

A client mistake (malformed JSON, a wrong type, an unknown model, too large a body) is a 4xx
that says what was wrong; only luodi's own failures are 5xx. Every error response carries the
request id, so a user can quote it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from luodi.errors import LuodiError, RateLimitedError

log = logging.getLogger("luodi.serve")

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    request: Request | None,
    status: int,
    message: str,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response; the request's metrics and error counters see it."""
    if request is not None:
        hook = getattr(request.app.state, "on_error", None)
        if hook is not None:
            hook(request.url.path, type_)
    return JSONResponse(
        error_body(message, type_, code, param), status_code=status, headers=headers
    )


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts, param = [], None
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        if e.get("type") == "json_invalid":
            return f"the request body is not valid JSON: {e.get('msg')}", None
        where = ".".join(loc) or "body"
        param = param or where
        parts.append(f"{where}: {e.get('msg')}")
    return "invalid request: " + "; ".join(parts[:10]), param


def install_error_handlers(app: FastAPI) -> None:
    """Map luodi errors, validation errors and HTTP errors to the OpenAI error shape."""

    @app.exception_handler(LuodiError)
    async def _luodi(request: Request, exc: LuodiError) -> JSONResponse:
        headers = None
        if isinstance(exc, RateLimitedError):
            headers = {"Retry-After": str(max(1, round(exc.retry_after + 0.4999)))}
        if exc.http_status >= 500:
            log.error("request %s failed: %s", getattr(request.state, "request_id", "?"), exc)
        return error_response(
            request, exc.http_status, exc.message, exc.error_type, exc.code, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(request, 400, message, "invalid_request_error", "bad_input", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _STATUS_TYPES.get(exc.status_code, "invalid_request_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(
            request, exc.status_code, message, type_, None, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", "?")
        log.exception("request %s: internal error", rid)
        return error_response(
            request,
            500,
            f"internal error (request {rid}); the gateway log has the details",
            "server_error",
            "internal_error",
        )
