"""Threads of the calling user. Another user's thread answers 404, exactly like a missing one,
so ids cannot be probed. Deleting checks the token online with auth first (a destructive
action must not rest on a token that was revoked a moment ago in a way Redis has not seen)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from app.backend.context import Context
from app.backend.deps import bearer, ctx, require_permission
from app.backend.repositories import threads as repo
from app.backend.tokens import Principal, refused
from app.common import threads
from app.common.errors import ApiError
from app.common.text import StorableStr

router = APIRouter(prefix="/api/threads", tags=["threads"])


class ThreadBody(BaseModel):
    title: StorableStr = Field(min_length=1, max_length=200)


class NewThread(ThreadBody):
    # The thread's first user message, stored with it or not at all.
    message: StorableStr | None = Field(None, min_length=1, max_length=32_000)


class ThreadEdit(ThreadBody):
    # The version the client read: a stale one is refused with 409 naming the current version.
    version: int | None = Field(None, ge=1)


def _missing() -> ApiError:
    return ApiError(404, "not_found", "no such thread")


@router.post("", status_code=201)
async def create(body: NewThread, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    async with c.db.begin() as conn:
        return await repo.create(conn, who.sub, body.title, body.message)


@router.get("")
async def listing(limit: int = Query(20, ge=1, le=threads.MAX_PAGE), offset: int = Query(0, ge=0),
                  who: Principal = Depends(require_permission("threads:read")),
                  c: Context = Depends(ctx)) -> dict[str, Any]:
    async with c.db.connect() as conn:
        items, total = await threads.listing(conn, who.sub, limit, offset)
    return {"threads": items, "total": total, "limit": limit, "offset": offset}


@router.get("/{thread_id}")
async def read(thread_id: uuid.UUID, who: Principal = Depends(require_permission("threads:read")),
               c: Context = Depends(ctx)) -> dict[str, Any]:
    async with c.db.connect() as conn:
        found = await threads.owned(conn, who.sub, thread_id)
    if found is None:
        raise _missing()
    return found


@router.patch("/{thread_id}")
async def rename(thread_id: uuid.UUID, body: ThreadEdit, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    try:
        async with c.db.begin() as conn:
            found = await repo.rename(conn, who.sub, thread_id, body.title, body.version)
    except repo.StaleVersion as e:
        raise ApiError(409, "version_conflict", f"the thread is at version {e.current}, not {body.version}",
                       current_version=e.current) from None
    if found is None:
        raise _missing()
    return found


@router.delete("/{thread_id}", status_code=204)
async def delete(thread_id: uuid.UUID, request: Request, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> Response:
    verdict = await c.auth.introspect(bearer(request))
    if not verdict.get("active"):
        raise refused(f"token no longer active at auth ({verdict.get('reason', 'inactive')})")
    async with c.db.begin() as conn:
        if not await threads.delete(conn, who.sub, thread_id):
            raise _missing()
    await c.bus.forget(str(thread_id))
    return Response(status_code=204)
