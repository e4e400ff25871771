"""A user's own sessions: list, revoke one, revoke all. Other users' ids read as 404."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from app.auth import grants
from app.auth.context import Context
from app.auth.deps import Claims, actor, ctx, user_claims
from app.common.errors import ApiError

router = APIRouter(prefix="/auth/sessions", tags=["sessions"])


@router.get("")
async def list_sessions(claims: Claims = Depends(user_claims), c: Context = Depends(ctx)) -> dict[str, object]:
    sessions = await c.sessions.list(claims["sub"])
    return {"sessions": [{**s.public(), "current": s.id == claims["sid"]} for s in sessions],
            "maximum": c.settings.session_max}


@router.delete("/{session_id}", status_code=204)
async def revoke_one(session_id: str, request: Request, claims: Claims = Depends(user_claims),
                     c: Context = Depends(ctx)) -> Response:
    session = await c.sessions.get(session_id)
    if session is None or session.user_id != claims["sub"]:
        raise ApiError(404, "not_found", "no such session")
    async with c.db.begin() as conn:
        await grants.close_session(c, conn, claims["sub"], session_id, "revoked")
    await c.audit.record("session_revoked", actor(request), claims["sub"], session_id=session_id)
    return Response(status_code=204)


@router.delete("", status_code=204)
async def revoke_all(request: Request, claims: Claims = Depends(user_claims), c: Context = Depends(ctx)) -> Response:
    sessions = await c.sessions.list(claims["sub"])
    async with c.db.begin() as conn:
        for s in sessions:
            await grants.close_session(c, conn, claims["sub"], s.id, "revoked")
    await c.audit.record("session_revoked", actor(request), claims["sub"], sessions=len(sessions))
    return Response(status_code=204)
