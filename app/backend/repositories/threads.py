"""Threads as the API edits them: created with their first message in one transaction, renamed
only from the version the client read.

A thread's title can be edited from two tabs, two devices or an agent at once. The client sends
the `version` it read; the UPDATE matches that version only and bumps it, so of two edits from
one version exactly one applies and the other learns the current version (409) instead of
erasing the first without anyone knowing.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.backend.repositories import StaleVersion
from app.common import threads as rows
from app.common.tables import threads

__all__ = ["StaleVersion", "create", "rename"]


async def create(conn: AsyncConnection, owner: str, title: str, first_message: str | None) -> dict[str, Any]:
    """The thread, and its first user message when given, in the caller's transaction: a failed
    message insert leaves no thread without it."""
    thread = await rows.create(conn, owner, title)
    if first_message is not None:
        thread["messages"] = [await rows.add_message(conn, owner, uuid.UUID(thread["id"]), "user", first_message)]
    return thread


async def rename(conn: AsyncConnection, owner: str, thread_id: uuid.UUID, title: str,
                 version: int | None) -> dict[str, Any] | None:
    """The renamed thread, None when the owner has no such thread; StaleVersion when `version`
    is not the current one (no version: last write wins, as before versions existed)."""
    if version is None:
        return await rows.rename(conn, owner, thread_id, title)
    mine = (threads.c.id == thread_id) & (threads.c.owner_id == uuid.UUID(owner))
    row = (await conn.execute(update(threads).where(mine, threads.c.version == version)
                              .values(title=title, updated_at=func.now(), version=threads.c.version + 1)
                              .returning(*threads.c))).first()
    if row is not None:
        return rows.public(row)
    current = (await conn.execute(select(threads.c.version).where(mine))).scalar()
    if current is None:
        return None
    raise StaleVersion(current)
