"""Audit rows for auth events, written through the INSERT/SELECT-only audit role.

`detail` holds only what the caller passes here; callers never pass passwords or tokens,
and keys that look like one are dropped as a second line of defence.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.models import audit_log

EVENTS = ("register", "login_success", "login_failure", "logout", "refresh", "refresh_reuse_detected",
          "role_change", "password_change", "session_revoked", "oidc_login", "service_token", "key_rotated",
          "key_retired", "user_deleted", "email_verified", "password_reset_requested", "password_reset")
_FORBIDDEN = ("password", "token", "secret", "hash")


@dataclass(frozen=True)
class Actor:
    ip: str
    user_agent: str


class AuditLog:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def record(self, event: str, actor: Actor, user_id: str | uuid.UUID | None = None,
                     email: str | None = None, **detail: Any) -> None:
        assert event in EVENTS, event
        clean = {k: v for k, v in detail.items() if not any(f in k.lower() for f in _FORBIDDEN)}
        async with self.engine.begin() as conn:
            await conn.execute(insert(audit_log).values(
                event=event, user_id=uuid.UUID(str(user_id)) if user_id else None, email=email,
                ip=actor.ip, user_agent=actor.user_agent[:512], detail=clean))
