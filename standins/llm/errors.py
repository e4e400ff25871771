"""OpenAI's error shape, `{"error": {"message", "type", "code", "param"}}`, for every failure,
so the platform's client reads the stand-in's errors exactly as a provider's."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("llm_standin")

# What a provider says for each status the test-control API can inject.
FAULT_ERRORS = {
    429: ("requests", "rate_limit_exceeded", "Rate limit reached"),
    500: ("server_error", "internal_error", "The server had an error while processing your request"),
    502: ("server_error", "bad_gateway", "Bad gateway"),
    503: ("server_error", "service_unavailable", "The engine is currently overloaded"),
}


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: str | None = "invalid_request_error", param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), self.status, headers=self.headers)

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


def invalid(errors: list[dict]) -> OpenAIError:
    """A 400 naming each invalid field (`messages.1.role: ...`), from pydantic's or FastAPI's errors."""
    def where(e: dict) -> str:
        return ".".join(str(p) for p in e["loc"] if p not in ("body", "query")) or "body"

    problems = [f"{where(e)}: {str(e['msg']).removeprefix('Value error, ')}" for e in errors]
    return OpenAIError(400, "invalid request: " + "; ".join(problems), param=where(errors[0]) if errors else None)


def validation_error(e: ValidationError) -> OpenAIError:
    return invalid(list(e.errors()))


def injected(status: int, fault_id: str) -> OpenAIError:
    type_, code, text = FAULT_ERRORS[status]
    return OpenAIError(status, f"{text} (injected by the stand-in's fault {fault_id})", type_, code,
                       headers={"Retry-After": "1"} if status == 429 else None)


def install(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def bad_query(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid(list(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return OpenAIError(exc.status_code, str(exc.detail), code=code, headers=exc.headers).response()

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return OpenAIError(500, "internal error", "server_error", "internal_error").response()
