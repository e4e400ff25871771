"""Teams: membership and roles, invitations by email, team threads, and who hears a thread.

Roles, strongest first: owner, admin, member, viewer. Owners and admins invite and remove;
owners, admins and members write to team threads and start runs there; viewers only read.
Live events of a team thread go to every member's sockets: Redis keeps, per team thread, the
ids of the members (`team:audience:<thread>`), which the event bus reads when it publishes.
Removing a member takes them out of every such set and tells their sockets, on every
instance, to drop those threads (`thread_access_revoked`), before the removal is answered.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.backend.events import audience_key
from app.backend.ws.envelope import envelope
from app.backend.ws.hub import user_channel
from app.common import threads
from app.common.tables import team_invites, team_members, team_threads, teams
from app.common.tables import threads as thread_table

RANK = {"owner": 0, "admin": 1, "member": 2, "viewer": 3}
WRITERS = ("owner", "admin", "member")
MANAGERS = ("owner", "admin")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def role_of(conn: AsyncConnection, team_id: uuid.UUID, user_id: str) -> str | None:
    return (await conn.execute(select(team_members.c.role).where(
        team_members.c.team_id == team_id, team_members.c.user_id == uuid.UUID(user_id)))).scalar()


async def team_of_thread(conn: AsyncConnection, thread_id: uuid.UUID) -> uuid.UUID | None:
    return (await conn.execute(select(team_threads.c.team_id).where(team_threads.c.thread_id == thread_id))).scalar()


async def can_read_thread(conn: AsyncConnection, user_id: str, thread_id: uuid.UUID) -> bool:
    """The thread is the user's, or a thread of a team they belong to (any role)."""
    if await threads.owned(conn, user_id, thread_id) is not None:
        return True
    team = await team_of_thread(conn, thread_id)
    return team is not None and await role_of(conn, team, user_id) is not None


async def create(db: AsyncEngine, owner: str, name: str) -> dict[str, Any]:
    tid = uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(teams.insert().values(id=tid, name=name, owner_id=uuid.UUID(owner)))
        await conn.execute(team_members.insert().values(team_id=tid, user_id=uuid.UUID(owner), role="owner"))
    return {"id": str(tid), "name": name, "role": "owner"}


async def describe(db: AsyncEngine, team_id: uuid.UUID) -> dict[str, Any]:
    async with db.connect() as conn:
        team = (await conn.execute(select(teams).where(teams.c.id == team_id))).one()
        members = (await conn.execute(select(team_members).where(team_members.c.team_id == team_id)
                                      .order_by(team_members.c.joined_at))).all()
    return {"id": str(team.id), "name": team.name,
            "members": [{"user_id": str(m.user_id), "role": m.role} for m in members]}


async def invite(db: AsyncEngine, team_id: uuid.UUID, email: str, role: str, by: str, ttl_s: int) -> str:
    token = secrets.token_urlsafe(32)
    async with db.begin() as conn:
        await conn.execute(team_invites.insert().values(
            token_hash=_hash(token), team_id=team_id, email=email, role=role, invited_by=uuid.UUID(by),
            expires_at=datetime.now(timezone.utc) + timedelta(seconds=ttl_s)))
    return token


class NotTheInvitee(Exception):
    """The invitation was sent to another email than the accepting user's."""


async def accept(db: AsyncEngine, redis: Redis, token: str, user_id: str, email: str) -> dict[str, Any] | None:
    """Join the team with the invitation's role (once, before it expires, as the user it was sent
    to: a forwarded or leaked link joins no one else); None if it cannot be used."""
    now = datetime.now(timezone.utc)
    usable = (team_invites.c.token_hash == _hash(token), team_invites.c.accepted_at.is_(None),
              team_invites.c.expires_at > now)
    async with db.begin() as conn:
        inv = (await conn.execute(update(team_invites).where(
            *usable, func.lower(team_invites.c.email) == email.lower()).values(accepted_at=now)
            .returning(team_invites.c.team_id, team_invites.c.role))).first()
        if inv is None:
            if (await conn.execute(select(team_invites.c.token_hash).where(*usable))).first() is not None:
                raise NotTheInvitee()
            return None
        await conn.execute(pg_insert(team_members).values(team_id=inv.team_id, user_id=uuid.UUID(user_id), role=inv.role)
                           .on_conflict_do_update(index_elements=["team_id", "user_id"], set_={"role": inv.role}))
        thread_ids = await _thread_ids(conn, inv.team_id)
    for thread_id in thread_ids:
        await redis.sadd(audience_key(thread_id), user_id)
    return {"team_id": str(inv.team_id), "role": inv.role}


async def _thread_ids(conn: AsyncConnection, team_id: uuid.UUID) -> list[str]:
    return [str(t) for t in (await conn.execute(select(team_threads.c.thread_id)
                                                .where(team_threads.c.team_id == team_id))).scalars()]


async def remove(db: AsyncEngine, redis: Redis, team_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """The member is out: of the table, of every team thread's audience, and off their sockets' subscriptions."""
    async with db.begin() as conn:
        gone = (await conn.execute(delete(team_members).where(
            team_members.c.team_id == team_id, team_members.c.user_id == user_id,
            team_members.c.role != "owner"))).rowcount == 1
        thread_ids = await _thread_ids(conn, team_id)
    if not gone:
        return False
    for thread_id in thread_ids:
        await redis.srem(audience_key(thread_id), str(user_id))
        notice = envelope("thread_access_revoked", {"reason": "removed from the team", "team_id": str(team_id)},
                          thread_id=thread_id)
        await redis.publish(user_channel(str(user_id)), json.dumps(notice))
    return True


async def create_thread(db: AsyncEngine, redis: Redis, team_id: uuid.UUID, creator: str, title: str) -> dict[str, Any]:
    async with db.begin() as conn:
        thread = await threads.create(conn, creator, title)
        await conn.execute(team_threads.insert().values(thread_id=uuid.UUID(thread["id"]), team_id=team_id))
        members = [str(u) for u in (await conn.execute(select(team_members.c.user_id)
                                                       .where(team_members.c.team_id == team_id))).scalars()]
    await redis.sadd(audience_key(thread["id"]), *members)
    return {**thread, "team_id": str(team_id)}


async def list_threads(db: AsyncEngine, team_id: uuid.UUID) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = (await conn.execute(select(thread_table).join(team_threads, team_threads.c.thread_id == thread_table.c.id)
                                   .where(team_threads.c.team_id == team_id).order_by(thread_table.c.created_at))).all()
    return [{**threads.public(r), "team_id": str(team_id)} for r in rows]
