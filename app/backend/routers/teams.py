"""Teams over REST: create, invite by email, accept, members and their removal, team threads,
their messages and runs. Roles are enforced here (app.backend.teams says who may do what);
anyone outside a team gets 404 for it, as for a thread that is not theirs.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from app.backend import teams
from app.backend.context import Context
from app.backend.deps import bearer, ctx, require_permission
from app.backend.routers.billing import require_verified
from app.backend.routers.runs import submit
from app.backend.runs import RunRequest
from app.backend.tokens import Principal, refused
from app.common import threads
from app.common.errors import ApiError
from app.common.text import StorableStr

router = APIRouter(prefix="/api/teams", tags=["teams"])
log = logging.getLogger("app.backend.teams")
EMAIL = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"


class TeamBody(BaseModel):
    name: StorableStr = Field(min_length=1, max_length=100)


class InviteBody(BaseModel):
    email: str = Field(pattern=EMAIL, max_length=254)
    role: str = Field(pattern="^(admin|member|viewer)$")


class AcceptBody(BaseModel):
    token: str = Field(min_length=1, max_length=200)


class ThreadBody(BaseModel):
    title: StorableStr = Field(min_length=1, max_length=200)


class RunBody(BaseModel):
    input: StorableStr = Field(min_length=1, max_length=8000)


async def _role(c: Context, who: Principal, team_id: uuid.UUID, allowed: tuple[str, ...] | None = None) -> str:
    async with c.db.connect() as conn:
        role = await teams.role_of(conn, team_id, who.sub)
    if role is None:
        raise ApiError(404, "not_found", "no such team")
    if allowed is not None and role not in allowed:
        raise ApiError(403, "team_role", f"a team {role} may not do this (needs {' or '.join(allowed)})")
    return role


async def _team_thread(c: Context, team_id: uuid.UUID, thread_id: uuid.UUID) -> None:
    async with c.db.connect() as conn:
        if await teams.team_of_thread(conn, thread_id) != team_id:
            raise ApiError(404, "not_found", "no such thread in this team")


@router.post("", status_code=201)
async def create(body: TeamBody, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    require_verified(who)
    return await teams.create(c.db, who.sub, body.name)


@router.get("/{team_id}")
async def get(team_id: uuid.UUID, who: Principal = Depends(require_permission("threads:read")),
              c: Context = Depends(ctx)) -> dict[str, Any]:
    await _role(c, who, team_id)
    return await teams.describe(c.db, team_id)


@router.post("/{team_id}/invites", status_code=201)
async def invite(team_id: uuid.UUID, body: InviteBody, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    await _role(c, who, team_id, teams.MANAGERS)
    if not c.mailer.configured:
        raise ApiError(503, "email_disabled", "no SMTP relay is configured: invitations cannot be sent")
    token = await teams.invite(c.db, team_id, body.email, body.role, who.sub, c.settings.team_invite_ttl_s)
    link = f"{c.settings.app_url.rstrip('/')}/teams/join?token={token}"
    try:
        await c.mailer.send(body.email, "You are invited to a team",
                            f"You were invited to join a team as {body.role}:\n\n{link}\n\n"
                            f"The link works once, within {c.settings.team_invite_ttl_s} seconds.\n")
    except Exception as e:  # the invitation stands; the inviter is told the email did not go
        log.warning("invitation email not sent: %s", type(e).__name__)
        raise ApiError(502, "email_failed", "the invitation email could not be sent") from None
    return {"team_id": str(team_id), "email": body.email, "role": body.role}


@router.post("/invites/accept")
async def accept(body: AcceptBody, request: Request, who: Principal = Depends(require_permission("threads:read")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    # The caller's email is auth's, read now: a token says who, not which address they hold today.
    verdict = await c.auth.introspect(bearer(request))
    if not verdict.get("active"):
        raise refused(f"token no longer active at auth ({verdict.get('reason', 'inactive')})")
    try:
        joined = await teams.accept(c.db, c.redis, body.token, who.sub, str(verdict.get("email", "")))
    except teams.NotTheInvitee:
        raise ApiError(403, "not_the_invitee", "this invitation was sent to another email address") from None
    if joined is None:
        raise ApiError(400, "invalid_invitation", "this invitation is not valid (used, expired or unknown)")
    return joined


@router.delete("/{team_id}/members/{user_id}", status_code=204)
async def remove(team_id: uuid.UUID, user_id: uuid.UUID, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> Response:
    await _role(c, who, team_id, teams.MANAGERS)
    if not await teams.remove(c.db, c.redis, team_id, user_id):
        raise ApiError(404, "not_found", "no such member (an owner is not removed)")
    return Response(status_code=204)


@router.post("/{team_id}/threads", status_code=201)
async def create_thread(team_id: uuid.UUID, body: ThreadBody,
                        who: Principal = Depends(require_permission("threads:write")),
                        c: Context = Depends(ctx)) -> dict[str, Any]:
    await _role(c, who, team_id, teams.WRITERS)
    return await teams.create_thread(c.db, c.redis, team_id, who.sub, body.title)


@router.get("/{team_id}/threads")
async def list_threads(team_id: uuid.UUID, who: Principal = Depends(require_permission("threads:read")),
                       c: Context = Depends(ctx)) -> dict[str, Any]:
    await _role(c, who, team_id)
    return {"threads": await teams.list_threads(c.db, team_id)}


@router.get("/{team_id}/threads/{thread_id}/messages")
async def messages(team_id: uuid.UUID, thread_id: uuid.UUID,
                   who: Principal = Depends(require_permission("threads:read")),
                   c: Context = Depends(ctx)) -> dict[str, Any]:
    await _role(c, who, team_id)
    await _team_thread(c, team_id, thread_id)
    async with c.db.connect() as conn:
        items, total = await threads.list_messages(conn, thread_id, threads.MAX_PAGE, 0)
    return {"messages": items, "total": total}


@router.post("/{team_id}/threads/{thread_id}/runs", status_code=202)
async def start_run(team_id: uuid.UUID, thread_id: uuid.UUID, body: RunBody,
                    who: Principal = Depends(require_permission("runs:create")),
                    c: Context = Depends(ctx)) -> dict[str, Any]:
    await _role(c, who, team_id, teams.WRITERS)
    await _team_thread(c, team_id, thread_id)
    return await submit(c, who, thread_id, RunRequest(input=body.input))
