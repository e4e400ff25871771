"""One error body everywhere: `{"error", "detail", "request_id"}`, never a 500 for bad input.

An unreachable dependency becomes 503 naming it; validation failures 422 naming the field.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import redis.exceptions
from clickhouse_connect.driver.exceptions import OperationalError as ClickHouseUnreachable
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("app")


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None,
                 **extra: Any):
        self.status, self.error, self.detail, self.headers, self.extra = status, error, detail, headers, extra


def unauthorized(detail: str, error: str = "unauthorized", realm: str = "auth") -> ApiError:
    return ApiError(401, error, detail, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})


def body(request: Request, error: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "detail": detail, **extra, "request_id": getattr(request.state, "request_id", None)}


def _dependency(exc: Exception, http_dependency: str) -> str:
    if isinstance(exc, redis.exceptions.RedisError):
        return "redis"
    if isinstance(exc, ClickHouseUnreachable):
        return "clickhouse"
    if isinstance(exc, httpx.HTTPError):
        return http_dependency
    return "postgres"


# SQLSTATE classes of a session the server ended: 08 connection exception, 57P01-57P03 admin
# shutdown, crash shutdown, cannot connect now.
LOST_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def _connection_lost(exc: sqlalchemy.exc.DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(getattr(exc.orig, "__cause__", None), "sqlstate", None)
    return isinstance(code, str) and code.startswith(LOST_SQLSTATES)


def install(app: FastAPI, http_dependency: str) -> None:
    """`http_dependency` names the service behind the app's outgoing HTTP calls in 503 answers."""
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(request, exc.error, exc.detail, **exc.extra), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        for e in exc.errors():
            loc = [str(p) for p in e["loc"] if p != "body"]
            name = "body" if e["type"] == "json_invalid" or not loc else ".".join(loc)
            fields.append({"field": name, "message": e["msg"]})
        detail = "invalid request: " + ", ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(body(request, "validation_error", detail, fields=fields), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(body(request, error, str(exc.detail)), exc.status_code, headers=exc.headers)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        name = _dependency(exc, http_dependency)
        log.warning("dependency %s unavailable: %s", name, type(exc).__name__)
        if isinstance(exc, sqlalchemy.exc.TimeoutError):
            # The server is fine, this process has no connection free: worth retrying soon.
            return JSONResponse(body(request, "dependency_unavailable", "postgres connection pool exhausted",
                                     dependency=name, reason="pool_exhausted"), 503, headers={"Retry-After": "1"})
        return JSONResponse(body(request, "dependency_unavailable", f"{name} is unavailable", dependency=name,
                                 reason="unreachable"), 503, headers={"Retry-After": "5"})

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def database_error(request: Request, exc: sqlalchemy.exc.DBAPIError) -> JSONResponse:
        # A connection the server dropped mid-request (a restart, an admin's terminate) is the
        # database being away, not a bug; the pool has already discarded that connection.
        if exc.connection_invalidated or _connection_lost(exc):
            return await unavailable(request, exc)
        return await bug(request, exc)

    # ReadOnlyError: a write reached a primary Sentinel has just demoted (retried, still READONLY):
    # Redis is not writable now, which is the dependency being away, not a bug.
    for kind in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError,
                 httpx.TransportError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
                 ClickHouseUnreachable, ConnectionError, TimeoutError, OSError):
        app.add_exception_handler(kind, unavailable)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(body(request, "internal_error", "internal error"), 500)
