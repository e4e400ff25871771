"""User rows: create (race-free on email), look up (also by an OIDC identity), change role or
password, delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.models import oidc_identities, users


class EmailTaken(Exception):
    pass


class NoEmail(Exception):
    """An OIDC identity seen for the first time came without an email to make its account with."""


class UnverifiedEmailTaken(Exception):
    """An account has the identity's email, which the provider does not vouch for: no link."""


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    role: str
    password_hash: str | None
    email_verified: bool = False
    display_name: str | None = None


def _user(row: object) -> User:
    return User(row.id, row.email, row.role, row.password_hash,  # type: ignore[attr-defined]
                row.email_verified_at is not None, row.display_name)  # type: ignore[attr-defined]


async def create(conn: AsyncConnection, email: str, password_hash: str | None, role: str) -> User:
    uid = uuid.uuid4()
    try:
        async with conn.begin_nested():
            await conn.execute(users.insert().values(id=uid, email=email, password_hash=password_hash, role=role))
    except IntegrityError as e:
        # The unique index on lower(email) decides concurrent registrations: one insert wins.
        if "users_email_lower_key" in str(e.orig):
            raise EmailTaken(email) from None
        raise
    return User(uid, email, role, password_hash)


async def by_email(conn: AsyncConnection, email: str) -> User | None:
    row = (await conn.execute(select(users).where(func.lower(users.c.email) == email.lower()))).first()
    return _user(row) if row else None


async def by_id(conn: AsyncConnection, user_id: str | uuid.UUID) -> User | None:
    try:
        uid = uuid.UUID(str(user_id))
    except ValueError:
        return None
    row = (await conn.execute(select(users).where(users.c.id == uid))).first()
    return _user(row) if row else None


async def set_role(conn: AsyncConnection, user_id: uuid.UUID, role: str) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(role=role))


async def set_password(conn: AsyncConnection, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute(update(users).where(users.c.id == user_id)
                       .values(password_hash=password_hash, password_changed_at=func.now()))


async def delete(conn: AsyncConnection, user_id: uuid.UUID) -> bool:
    """The user's row; its refresh families, refresh tokens and OIDC identities go with it (FK
    cascade). Audit rows stay: they have no FK, and the log is append-only."""
    result = await conn.execute(sql_delete(users).where(users.c.id == user_id))
    return result.rowcount == 1


async def mark_verified(conn: AsyncConnection, user_id: uuid.UUID) -> None:
    await conn.execute(update(users).where(users.c.id == user_id, users.c.email_verified_at.is_(None))
                       .values(email_verified_at=func.now()))


async def set_display_name(conn: AsyncConnection, user_id: uuid.UUID, name: str) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(display_name=name))


async def for_identity(conn: AsyncConnection, issuer: str, subject: str, email: str | None, email_verified: bool,
                       role: str) -> User:
    """The user an OIDC identity logs in as: the one it is linked to; else the account with its
    email when the provider vouches for that email (linked now); else a new account (`role`)."""
    key = (oidc_identities.c.issuer == issuer) & (oidc_identities.c.subject == subject)
    row = (await conn.execute(select(oidc_identities.c.user_id).where(key))).first()
    if row is not None:
        await conn.execute(update(oidc_identities).where(key).values(last_login_at=func.now()))
        user = await by_id(conn, row.user_id)
        assert user is not None  # the FK cascades identities away with their user
        return user
    if not email:
        raise NoEmail()
    user = await by_email(conn, email)
    if user is not None and not email_verified:
        raise UnverifiedEmailTaken()
    if user is None:
        user = await create(conn, email, None, role)
    await conn.execute(oidc_identities.insert().values(issuer=issuer, subject=subject, user_id=user.id,
                                                       last_login_at=func.now()))
    return user
