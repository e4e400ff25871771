"""Service-to-service endpoints: a service token from auth with the right scope, never a user token."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends

from app.backend.context import Context
from app.backend.deps import ctx, require_scope
from app.backend.tokens import Principal
from app.common import threads

router = APIRouter(prefix="/internal", tags=["internal"])

THREADS_READ = "backend:threads:read"


@router.get("/users/{user_id}/threads")
async def user_threads(user_id: uuid.UUID, who: Principal = Depends(require_scope(THREADS_READ)),
                       c: Context = Depends(ctx)) -> dict[str, Any]:
    async with c.db.connect() as conn:
        items, total = await threads.listing(conn, str(user_id), threads.MAX_PAGE, 0)
    return {"user_id": str(user_id), "thread_ids": [t["id"] for t in items], "total": total, "caller": who.sub}
