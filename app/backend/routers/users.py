"""Who am I, as the backend sees the caller's token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from app.backend.deps import require_permission
from app.backend.tokens import Principal

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("/me")
async def me(who: Principal = Depends(require_permission("profile:read"))) -> dict[str, Any]:
    return {"id": who.sub, "role": who.role, "permissions": sorted(who.permissions),
            "session_id": who.session_id, "token_expires_at": who.exp}
