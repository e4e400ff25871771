"""Thread rows: every query but the admin listing is scoped to the owner. Shared by the
backend's API and the agents (a run's report becomes the thread's next assistant message)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.common.tables import messages, threads

MAX_PAGE = 100


def public(row: Any) -> dict[str, Any]:
    return {"id": str(row.id), "owner_id": str(row.owner_id), "title": row.title,
            "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
            "version": row.version}


async def create(conn: AsyncConnection, owner: str, title: str) -> dict[str, Any]:
    row = (await conn.execute(threads.insert().values(id=uuid.uuid4(), owner_id=uuid.UUID(owner), title=title)
                              .returning(*threads.c))).one()
    return public(row)


async def owned(conn: AsyncConnection, owner: str, thread_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await conn.execute(select(threads).where(threads.c.id == thread_id,
                                                    threads.c.owner_id == uuid.UUID(owner)))).first()
    return public(row) if row else None


async def listing(conn: AsyncConnection, owner: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    where = threads.c.owner_id == uuid.UUID(owner)
    rows = (await conn.execute(select(threads).where(where).order_by(threads.c.created_at, threads.c.id)
                               .limit(limit).offset(offset))).all()
    total = (await conn.execute(select(func.count()).select_from(threads).where(where))).scalar_one()
    return [public(r) for r in rows], total


async def rename(conn: AsyncConnection, owner: str, thread_id: uuid.UUID, title: str) -> dict[str, Any] | None:
    row = (await conn.execute(update(threads)
                              .where(threads.c.id == thread_id, threads.c.owner_id == uuid.UUID(owner))
                              .values(title=title, updated_at=func.now(), version=threads.c.version + 1)
                              .returning(*threads.c))).first()
    return public(row) if row else None


async def delete(conn: AsyncConnection, owner: str, thread_id: uuid.UUID) -> bool:
    result = await conn.execute(threads.delete().where(threads.c.id == thread_id,
                                                       threads.c.owner_id == uuid.UUID(owner)))
    return result.rowcount == 1


def public_message(row: Any) -> dict[str, Any]:
    return {"id": str(row.id), "thread_id": str(row.thread_id), "role": row.role, "content": row.content,
            "created_at": row.created_at.isoformat()}


async def add_message(conn: AsyncConnection, owner: str, thread_id: uuid.UUID, role: str, content: str) -> dict[str, Any]:
    row = (await conn.execute(messages.insert().values(id=uuid.uuid4(), thread_id=thread_id, owner_id=uuid.UUID(owner),
                                                       role=role, content=content).returning(*messages.c))).one()
    return public_message(row)


async def list_messages(conn: AsyncConnection, thread_id: uuid.UUID, limit: int,
                        offset: int) -> tuple[list[dict[str, Any]], int]:
    where = messages.c.thread_id == thread_id
    rows = (await conn.execute(select(messages).where(where).order_by(messages.c.created_at, messages.c.id)
                               .limit(limit).offset(offset))).all()
    total = (await conn.execute(select(func.count()).select_from(messages).where(where))).scalar_one()
    return [public_message(r) for r in rows], total


async def edit_message(conn: AsyncConnection, owner: str, thread_id: uuid.UUID, message_id: uuid.UUID,
                       content: str) -> dict[str, Any] | None:
    row = (await conn.execute(update(messages).where(
        messages.c.id == message_id, messages.c.thread_id == thread_id, messages.c.owner_id == uuid.UUID(owner))
        .values(content=content).returning(*messages.c))).first()
    return public_message(row) if row else None


async def delete_message(conn: AsyncConnection, owner: str, thread_id: uuid.UUID, message_id: uuid.UUID) -> bool:
    result = await conn.execute(messages.delete().where(
        messages.c.id == message_id, messages.c.thread_id == thread_id, messages.c.owner_id == uuid.UUID(owner)))
    return result.rowcount == 1
