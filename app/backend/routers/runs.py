"""Messages of a thread, and agent runs over REST (the same runs the WebSocket starts)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy.exc
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from app.agents.usage import QuotaExceeded
from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.runs import ACTIVE, NothingToDo, RunRequest
from app.backend.tokens import Principal
from app.common import threads
from app.common.errors import ApiError
from app.common.text import StorableStr

router = APIRouter(prefix="/api", tags=["runs"])


class MessageBody(BaseModel):
    content: StorableStr = Field(min_length=1, max_length=32_000)


class Answers(BaseModel):
    answers: dict[str, StorableStr] = Field(min_length=1, max_length=20)


async def _thread(c: Context, who: Principal, thread_id: uuid.UUID) -> None:
    async with c.db.connect() as conn:
        if await threads.owned(conn, who.sub, thread_id) is None:
            raise ApiError(404, "not_found", "no such thread")


@router.post("/threads/{thread_id}/messages", status_code=201)
async def add_message(thread_id: uuid.UUID, body: MessageBody,
                      who: Principal = Depends(require_permission("threads:write")),
                      c: Context = Depends(ctx)) -> dict[str, Any]:
    await _thread(c, who, thread_id)
    try:
        async with c.db.begin() as conn:
            saved = await threads.add_message(conn, who.sub, thread_id, "user", body.content)
    except sqlalchemy.exc.IntegrityError:
        # The thread was deleted between the ownership check and the insert: it is gone.
        raise ApiError(404, "not_found", "no such thread") from None
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


async def submit(c: Context, who: Principal, thread_id: uuid.UUID, req: RunRequest,
                 before_start: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> dict[str, Any]:
    """Start a run; the refusals as ApiErrors (the WebSocket maps them to `error` messages)."""
    if why := c.agents.cannot_start(req.agent):
        raise ApiError(422, "unknown_agent", why)
    try:
        return await c.runner.submit(who, thread_id, req, before_start)
    except QuotaExceeded as e:
        raise ApiError(429, "quota_exceeded", e.detail(), plan=e.plan, limit=e.limit, used=e.used,
                       resets_at=e.resets_at, upgrade={"checkout": "/api/billing/checkout",
                                                       "plans": sorted(c.settings.plan_prices_cents)}) from None
    except NothingToDo as e:
        raise ApiError(422, "nothing_to_do", str(e)) from None


@router.post("/threads/{thread_id}/runs", status_code=202)
async def start_run(thread_id: uuid.UUID, body: RunRequest, who: Principal = Depends(require_permission("runs:create")),
                    c: Context = Depends(ctx)) -> dict[str, Any]:
    await _thread(c, who, thread_id)
    return await submit(c, who, thread_id, body)


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
    active = run["status"] in ACTIVE
    if active:
        await c.runner.request_stop(run["id"])
    return {"run_id": run["id"], "status": run["status"], "stop_requested": active}


@router.post("/runs/{run_id}/input", status_code=202)
async def answer(run_id: uuid.UUID, body: Answers, who: Principal = Depends(require_permission("runs:create")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    """The user's answers to the data helper's questions; the waiting run resumes with them."""
    run = await _run(c, who, run_id)
    if run["status"] != "awaiting_input":
        raise ApiError(409, "not_awaiting_input", f"the run is {run['status']}, not waiting for input")
    asked = {q["field"] for q in run["pending_input"]["questions"]}
    if set(body.answers) != asked:
        missing, unknown = sorted(asked - set(body.answers)), sorted(set(body.answers) - asked)
        raise ApiError(422, "answers_mismatch", f"answer exactly the questions asked: missing {missing}, "
                                                f"not asked {unknown}", asked=sorted(asked))
    if not await c.runner.provide_input(run, body.answers):
        raise ApiError(409, "already_answered", "the questions were answered already")
    return {"run_id": run["id"], "accepted": sorted(body.answers)}
