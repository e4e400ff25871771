"""Refresh-token families in PostgreSQL: rotation, and reuse detection that revokes a family.

Each refresh token is single-use. Marking it used is one conditional UPDATE, so of two
concurrent refreshes with the same token exactly one wins; the other counts as reuse and
revokes the family (the strict reading of RFC 6819: a replayed token means it leaked).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.models import refresh_families, refresh_tokens


class Outcome(Enum):
    ROTATED = "rotated"
    REUSED = "reused"  # the token was already used: the family is now revoked
    REVOKED = "revoked"  # the family was revoked earlier (logout, session revoked, reuse)
    UNKNOWN = "unknown"


async def start_family(conn: AsyncConnection, family_id: uuid.UUID, user_id: uuid.UUID) -> None:
    await conn.execute(refresh_families.insert().values(id=family_id, user_id=user_id))


async def record(conn: AsyncConnection, jti: str, family_id: uuid.UUID, exp: int) -> None:
    await conn.execute(refresh_tokens.insert().values(
        jti=uuid.UUID(jti), family_id=family_id, expires_at=datetime.fromtimestamp(exp, timezone.utc)))


async def use(conn: AsyncConnection, jti: str) -> Outcome:
    """Spend one refresh token (the caller records its successor in the same transaction)."""
    tid = uuid.UUID(jti)
    row = (await conn.execute(
        select(refresh_tokens.c.family_id, refresh_families.c.revoked_at)
        .join(refresh_families, refresh_families.c.id == refresh_tokens.c.family_id)
        .where(refresh_tokens.c.jti == tid))).first()
    if row is None:
        return Outcome.UNKNOWN
    if row.revoked_at is not None:
        return Outcome.REVOKED
    spent = await conn.execute(update(refresh_tokens)
                               .where(refresh_tokens.c.jti == tid, refresh_tokens.c.used_at.is_(None))
                               .values(used_at=datetime.now(timezone.utc)))
    if spent.rowcount == 1:
        return Outcome.ROTATED
    await revoke_family(conn, row.family_id, "reuse_detected")
    return Outcome.REUSED


async def revoke_family(conn: AsyncConnection, family_id: uuid.UUID, reason: str) -> None:
    await conn.execute(update(refresh_families)
                       .where(refresh_families.c.id == family_id, refresh_families.c.revoked_at.is_(None))
                       .values(revoked_at=datetime.now(timezone.utc), revoked_reason=reason))


async def revoke_user(conn: AsyncConnection, user_id: uuid.UUID, reason: str,
                      keep: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Revoke every live family of a user (but `keep`); returns the revoked family ids."""
    q = (update(refresh_families)
         .where(refresh_families.c.user_id == user_id, refresh_families.c.revoked_at.is_(None))
         .values(revoked_at=datetime.now(timezone.utc), revoked_reason=reason)
         .returning(refresh_families.c.id))
    if keep is not None:
        q = q.where(refresh_families.c.id != keep)
    return [r.id for r in await conn.execute(q)]
