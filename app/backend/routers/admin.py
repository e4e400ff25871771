"""Admin views across users (permission `users:read`: admins and owners)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query

from app.backend import threads
from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.tokens import Principal

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/users/{user_id}/threads")
async def user_threads(user_id: uuid.UUID, limit: int = Query(20, ge=1, le=threads.MAX_PAGE),
                       _: Principal = Depends(require_permission("users:read")),
                       c: Context = Depends(ctx)) -> dict[str, Any]:
    async with c.db.connect() as conn:
        items, total = await threads.listing(conn, str(user_id), limit, 0)
    return {"user_id": str(user_id), "threads": items, "total": total}
