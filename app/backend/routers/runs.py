"""Messages of a thread, and agent runs over REST (the same runs the WebSocket starts)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from app.backend import threads
from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.runs import MAX_STEP_DELAY_MS, MAX_STEPS
from app.backend.tokens import Principal
from app.common.errors import ApiError
from app.common.text import StorableStr

router = APIRouter(prefix="/api", tags=["runs"])


class MessageBody(BaseModel):
    content: StorableStr = Field(min_length=1, max_length=32_000)


class RunBody(BaseModel):
    scenario: Literal["default", "tool_error", "long"] = "default"
    steps: int = Field(3, ge=1, le=MAX_STEPS)
    step_delay_ms: int | None = Field(None, ge=0, le=MAX_STEP_DELAY_MS)
    request_id: StorableStr | None = Field(None, min_length=1, max_length=128)
    trace_id: StorableStr | None = Field(None, min_length=1, max_length=128)


async def _thread(c: Context, who: Principal, thread_id: uuid.UUID) -> None:
    async with c.db.connect() as conn:
        if await threads.owned(conn, who.sub, thread_id) is None:
            raise ApiError(404, "not_found", "no such thread")


@router.post("/threads/{thread_id}/messages", status_code=201)
async def add_message(thread_id: uuid.UUID, body: MessageBody,
                      who: Principal = Depends(require_permission("threads:write")),
                      c: Context = Depends(ctx)) -> dict[str, Any]:
    await _thread(c, who, thread_id)
    async with c.db.begin() as conn:
        saved = await threads.add_message(conn, who.sub, thread_id, "user", body.content)
    await c.bus.emit(who.sub, str(thread_id), "message_created", {"message": saved})
    return saved


@router.get("/threads/{thread_id}/messages")
async def list_messages(thread_id: uuid.UUID, limit: int = Query(50, ge=1, le=threads.MAX_PAGE),
                        offset: int = Query(0, ge=0), who: Principal = Depends(require_permission("threads:read")),
                        c: Context = Depends(ctx)) -> dict[str, Any]:
    await _thread(c, who, thread_id)
    async with c.db.connect() as conn:
        items, total = await threads.list_messages(conn, thread_id, limit, offset)
    return {"messages": items, "total": total, "limit": limit, "offset": offset}


@router.patch("/threads/{thread_id}/messages/{message_id}")
async def edit_message(thread_id: uuid.UUID, message_id: uuid.UUID, body: MessageBody,
                       who: Principal = Depends(require_permission("threads:write")),
                       c: Context = Depends(ctx)) -> dict[str, Any]:
    async with c.db.begin() as conn:
        saved = await threads.edit_message(conn, who.sub, thread_id, message_id, body.content)
    if saved is None:
        raise ApiError(404, "not_found", "no such message")
    return saved


@router.delete("/threads/{thread_id}/messages/{message_id}", status_code=204)
async def delete_message(thread_id: uuid.UUID, message_id: uuid.UUID,
                         who: Principal = Depends(require_permission("threads:write")),
                         c: Context = Depends(ctx)) -> Response:
    async with c.db.begin() as conn:
        if not await threads.delete_message(conn, who.sub, thread_id, message_id):
            raise ApiError(404, "not_found", "no such message")
    return Response(status_code=204)


@router.post("/threads/{thread_id}/runs", status_code=202)
async def start_run(thread_id: uuid.UUID, body: RunBody, who: Principal = Depends(require_permission("runs:create")),
                    c: Context = Depends(ctx)) -> dict[str, Any]:
    await _thread(c, who, thread_id)
    run = await c.runner.create(who.sub, thread_id, body.scenario, body.request_id, body.trace_id)
    c.runner.start(run, body.steps, body.step_delay_ms)
    return run


async def _run(c: Context, who: Principal, run_id: uuid.UUID) -> dict[str, Any]:
    run = await c.runner.owned(who.sub, run_id)
    if run is None:
        raise ApiError(404, "not_found", "no such run")
    return run


@router.get("/runs/{run_id}")
async def run_status(run_id: uuid.UUID, who: Principal = Depends(require_permission("threads:read")),
                     c: Context = Depends(ctx)) -> dict[str, Any]:
    return await _run(c, who, run_id)


@router.get("/runs/{run_id}/steps")
async def run_steps(run_id: uuid.UUID, who: Principal = Depends(require_permission("threads:read")),
                    c: Context = Depends(ctx)) -> dict[str, Any]:
    await _run(c, who, run_id)
    return {"run_id": str(run_id), "steps": await c.runner.steps(run_id)}


@router.post("/runs/{run_id}/stop", status_code=202)
async def stop_run(run_id: uuid.UUID, who: Principal = Depends(require_permission("runs:create")),
                   c: Context = Depends(ctx)) -> dict[str, Any]:
    run = await _run(c, who, run_id)
    if run["status"] in ("queued", "running"):
        await c.runner.request_stop(run["id"])
    return {"run_id": run["id"], "status": run["status"], "stop_requested": run["status"] in ("queued", "running")}
