"""Admin views across users (permission `users:read`: admins and owners)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.tokens import Principal
from app.common import threads

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/users/{user_id}/threads")
async def user_threads(user_id: uuid.UUID, limit: int = Query(20, ge=1, le=threads.MAX_PAGE),
                       _: Principal = Depends(require_permission("users:read")),
                       c: Context = Depends(ctx)) -> dict[str, Any]:
    async with c.db.connect() as conn:
        items, total = await threads.listing(conn, str(user_id), limit, 0)
    return {"user_id": str(user_id), "threads": items, "total": total}


class Notice(BaseModel):
    message: str = Field(min_length=1, max_length=2000)


@router.post("/broadcast", status_code=202)
async def broadcast(body: Notice, who: Principal = Depends(require_permission("users:role")),
                    c: Context = Depends(ctx)) -> dict[str, Any]:
    """A `system_notice` to every open socket on every instance (admins and owners)."""
    event = await c.bus.broadcast("system_notice", {"message": body.message, "by": who.sub})
    return {"timestamp": event["timestamp"]}
