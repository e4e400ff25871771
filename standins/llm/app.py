"""The FastAPI application: bearer-key check, OpenAI-shaped errors, the OpenAI routes and the
test-control API (`/_standin/*`: faults and the request log)."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from fastapi import FastAPI, Query, Request, Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from standins.llm import completions, errors
from standins.llm.errors import OpenAIError, validation_error
from standins.llm.schemas import FaultSpec
from standins.llm.settings import LlmStandinSettings
from standins.llm.store import Standin

PROTECTED = ("/v1/", "/_standin/")


class BearerKey:
    """Every /v1/* and /_standin/* request must carry `Authorization: Bearer <key>`.

    Checked before the body is read, so an unauthenticated request is a 401 whatever it sends."""

    def __init__(self, app: ASGIApp, key: str):
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED):
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            return await self.app(scope, receive, send)
        message = ("Incorrect API key provided" if header
                   else "You didn't provide an API key: send Authorization: Bearer <key>")
        body = json.dumps(OpenAIError(401, message, code="invalid_api_key").body()).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="llm-standin"')]})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: LlmStandinSettings) -> FastAPI:
    app = FastAPI(title="llm-standin", version=settings.version,
                  docs_url="/docs" if settings.is_local else None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.is_local else None)
    app.state.standin = standin = Standin(settings)
    started = int(time.time())
    errors.install(app)
    app.add_middleware(BearerKey, key=settings.secret("api_key") or "")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": settings.models, "version": settings.version}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": started, "owned_by": "llm-standin"}
                                           for m in settings.models]}

    app.add_api_route("/v1/chat/completions", completions.chat_completions, methods=["POST"])

    @app.post("/_standin/faults", status_code=201)
    async def add_fault(request: Request) -> dict[str, Any]:
        raw = await completions.json_body(request)
        try:
            spec = FaultSpec.model_validate(raw)
        except ValidationError as e:
            raise validation_error(e) from None
        if spec.model is not None and spec.model not in settings.models:
            raise OpenAIError(400, f"invalid fault: model '{spec.model}' is not served "
                                   f"({', '.join(settings.models)})", param="model")
        return standin.faults.add(spec).public()

    @app.get("/_standin/faults")
    async def list_faults(user: str | None = None) -> dict[str, Any]:
        return {"faults": [f.public() for f in standin.faults.of(user)]}

    @app.delete("/_standin/faults", status_code=204)
    async def clear_faults(user: str = Query(min_length=1)) -> Response:
        standin.faults.clear(user)
        return Response(status_code=204)

    @app.get("/_standin/requests")
    async def requests(user: str | None = None, since: int = Query(0, ge=0),
                       limit: int = Query(1000, ge=1)) -> dict[str, Any]:
        return {"requests": standin.log.select(user, since, limit)}

    @app.delete("/_standin/requests", status_code=204)
    async def clear_requests(user: str = Query(min_length=1)) -> Response:
        standin.log.clear(user)
        return Response(status_code=204)

    return app
