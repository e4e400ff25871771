"""Turn an authenticated user into a session and its token pair, and rotate that pair."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import refresh
from app.auth.context import Context
from app.auth.roles import permissions
from app.auth.users import User


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    expires_in: int
    session_id: str

    def body(self) -> dict[str, Any]:
        return {"access_token": self.access, "refresh_token": self.refresh, "token_type": "Bearer",
                "expires_in": self.expires_in, "session_id": self.session_id}


async def issue_pair(ctx: Context, conn: AsyncConnection, user: User, sid: uuid.UUID) -> TokenPair:
    s = ctx.settings
    # email_verified: the backend limits what an unverified account may do (teams, checkout, providers).
    claims = {"role": user.role, "permissions": permissions(user.role), "sid": str(sid),
              "email_verified": user.email_verified}
    access = ctx.tokens.issue(str(user.id), "access", s.access_ttl_s, **claims)
    refresh_tok = ctx.tokens.issue(str(user.id), "refresh", s.refresh_ttl_s, **claims)
    await refresh.record(conn, refresh_tok.claims["jti"], sid, refresh_tok.claims["exp"])
    return TokenPair(access.token, refresh_tok.token, s.access_ttl_s, str(sid))


async def open_session(ctx: Context, conn: AsyncConnection, user: User, ip: str, user_agent: str,
                       method: str) -> TokenPair:
    """A new session (= refresh family); evicts the user's oldest one at the maximum."""
    sid = uuid.uuid4()
    await refresh.start_family(conn, sid, user.id)
    pair = await issue_pair(ctx, conn, user, sid)
    for old in await ctx.sessions.create(str(sid), str(user.id), ip, user_agent, method):
        await refresh.revoke_family(conn, uuid.UUID(old), "evicted")
    return pair


async def close_session(ctx: Context, conn: AsyncConnection, user_id: str, sid: str, reason: str) -> bool:
    await refresh.revoke_family(conn, uuid.UUID(sid), reason)
    deleted = await ctx.sessions.delete(user_id, sid)
    await ctx.deny.replicated()  # an ended session must not come back with a failover
    return deleted
