"""Single-use, expiring tokens for the links in verification and password-reset emails.

Only the SHA-256 of a token is stored, so a database read gives nobody a working link. Using
one is a single conditional UPDATE: of two concurrent uses exactly one succeeds.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.models import email_tokens


class Status(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    USED = "used"
    UNKNOWN = "unknown"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(conn: AsyncConnection, user_id: uuid.UUID, purpose: str, ttl_s: int) -> str:
    token = secrets.token_urlsafe(32)
    await conn.execute(email_tokens.insert().values(
        token_hash=_hash(token), user_id=user_id, purpose=purpose,
        expires_at=datetime.now(timezone.utc) + timedelta(seconds=ttl_s)))
    return token


async def peek(conn: AsyncConnection, token: str, purpose: str) -> tuple[Status, uuid.UUID | None]:
    """What using the token now would meet, without using it (the page a link opens)."""
    row = (await conn.execute(select(email_tokens).where(
        email_tokens.c.token_hash == _hash(token), email_tokens.c.purpose == purpose))).first()
    if row is None:
        return Status.UNKNOWN, None
    if row.used_at is not None:
        return Status.USED, row.user_id
    if row.expires_at <= datetime.now(timezone.utc):
        return Status.EXPIRED, row.user_id
    return Status.VALID, row.user_id


async def use(conn: AsyncConnection, token: str, purpose: str) -> tuple[Status, uuid.UUID | None]:
    """Use the token once: VALID with its user, or why not (nothing changed then)."""
    used = (await conn.execute(update(email_tokens).where(
        email_tokens.c.token_hash == _hash(token), email_tokens.c.purpose == purpose,
        email_tokens.c.used_at.is_(None), email_tokens.c.expires_at > datetime.now(timezone.utc))
        .values(used_at=datetime.now(timezone.utc)).returning(email_tokens.c.user_id))).first()
    if used is not None:
        return Status.VALID, used.user_id
    return await peek(conn, token, purpose)
