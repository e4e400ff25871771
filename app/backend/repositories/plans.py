"""A user's plan as admins and the payment webhook change it.

Every change bumps `version`. An admin's change sent with the version it read applies only to
that version: two admins (or an admin and a checkout's webhook) changing one user's plan at once
would otherwise both succeed, the later undoing the earlier unseen. A user who never had a row
(the default plan) is at version 0. Without a version the change applies to whatever is there.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.backend.repositories import StaleVersion
from app.common.tables import user_plans

__all__ = ["StaleVersion", "set_plan", "upgrade_paid", "schedule_downgrade", "version"]

BUMP = {"version": user_plans.c.version + 1, "updated_at": func.now()}


async def version(conn: AsyncConnection, user_id: str) -> int:
    found = (await conn.execute(select(user_plans.c.version)
                                .where(user_plans.c.user_id == uuid.UUID(user_id)))).scalar()
    return int(found or 0)


async def set_plan(conn: AsyncConnection, user_id: str, plan: str, expected: int | None) -> int:
    """Set the plan (an admin's change); the new version, or StaleVersion when `expected` is not
    the current one."""
    uid = uuid.UUID(user_id)
    if expected is None:
        stmt = pg_insert(user_plans).values(user_id=uid, plan=plan)
        stmt = stmt.on_conflict_do_update(index_elements=["user_id"], set_={"plan": plan, **BUMP})
    elif expected == 0:
        stmt = pg_insert(user_plans).values(user_id=uid, plan=plan).on_conflict_do_nothing()
    else:
        stmt = update(user_plans).where(user_plans.c.user_id == uid, user_plans.c.version == expected) \
            .values(plan=plan, **BUMP)
    changed = (await conn.execute(stmt.returning(user_plans.c.version))).scalar()
    if changed is None:
        raise StaleVersion(await version(conn, user_id))
    return int(changed)


async def upgrade_paid(conn: AsyncConnection, user_id: uuid.UUID, plan: str, period_end: datetime) -> None:
    """A bought plan, paid until `period_end` (a pending downgrade is dropped)."""
    stmt = pg_insert(user_plans).values(user_id=user_id, plan=plan, period_end=period_end)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_={
        "plan": plan, "period_end": period_end, "pending_plan": None, **BUMP}))


async def schedule_downgrade(conn: AsyncConnection, user_id: str, to: str) -> dict[str, Any] | None:
    """`to` from the end of the paid period; None when there is no paid plan."""
    row = (await conn.execute(update(user_plans).where(
        user_plans.c.user_id == uuid.UUID(user_id), user_plans.c.period_end.is_not(None))
        .values(pending_plan=to, **BUMP)
        .returning(user_plans.c.plan, user_plans.c.pending_plan, user_plans.c.period_end))).first()
    return None if row is None else {"plan": row.plan, "pending_plan": row.pending_plan,
                                     "changes_at": row.period_end.isoformat()}
