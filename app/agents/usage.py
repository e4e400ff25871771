"""Plans, the runs-per-day quota, and what each user consumed.

The quota is taken in the same transaction that creates the run: one conditional upsert on
the user's row for the day, so concurrent starts cannot both take the last run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.agents.catalog import money
from app.common.settings import BackendSettings
from app.common.tables import usage_daily, usage_records, user_plans


@dataclass
class QuotaExceeded(Exception):
    plan: str
    limit: int
    used: int
    resets_at: str

    def detail(self) -> str:
        return (f"plan '{self.plan}' allows {self.limit} runs per day; {self.used} used today "
                f"(resets at {self.resets_at})")


def today() -> date:
    return datetime.now(timezone.utc).date()


def resets_at(day: date) -> str:
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=timezone.utc).isoformat()


async def plan_of(conn: AsyncConnection, settings: BackendSettings, user_id: str) -> str:
    row = (await conn.execute(select(user_plans.c.plan, user_plans.c.pending_plan, user_plans.c.period_end)
                              .where(user_plans.c.user_id == uuid.UUID(user_id)))).first()
    if row is None:
        return settings.default_plan
    # A downgrade waits for the end of the period that was paid for.
    if row.pending_plan and row.period_end is not None and row.period_end <= datetime.now(timezone.utc):
        return str(row.pending_plan)
    return str(row.plan)


async def take_run(conn: AsyncConnection, settings: BackendSettings, user_id: str) -> None:
    """Count one run against today's quota, or raise QuotaExceeded (nothing counted)."""
    plan = await plan_of(conn, settings, user_id)
    limit = settings.plan_runs_per_day[plan]
    day = today()
    stmt = pg_insert(usage_daily).values(user_id=uuid.UUID(user_id), day=day, runs=1)
    stmt = stmt.on_conflict_do_update(index_elements=["user_id", "day"], set_={"runs": usage_daily.c.runs + 1},
                                      where=None if limit is None else usage_daily.c.runs < limit)
    counted = (await conn.execute(stmt.returning(usage_daily.c.runs))).scalar()
    if counted is None or (limit is not None and counted > limit):
        used = (await conn.execute(select(usage_daily.c.runs).where(
            usage_daily.c.user_id == uuid.UUID(user_id), usage_daily.c.day == day))).scalar() or 0
        raise QuotaExceeded(plan, limit or 0, used, resets_at(day))


async def plan_status(db: AsyncEngine, settings: BackendSettings, user_id: str) -> dict[str, Any]:
    async with db.connect() as conn:
        plan = await plan_of(conn, settings, user_id)
        used = (await conn.execute(select(usage_daily.c.runs).where(
            usage_daily.c.user_id == uuid.UUID(user_id), usage_daily.c.day == today()))).scalar() or 0
        # what an admin's plan change sends back to apply only to this state (0: never changed)
        version = (await conn.execute(select(user_plans.c.version).where(
            user_plans.c.user_id == uuid.UUID(user_id)))).scalar() or 0
    return {"plan": plan, "runs_per_day": settings.plan_runs_per_day[plan], "runs_today": used,
            "resets_at": resets_at(today()), "version": version}


async def totals(db: AsyncEngine, user_id: str) -> dict[str, Any]:
    uid = uuid.UUID(user_id)
    cols = (func.count(distinct(usage_records.c.run_id)), func.count(), func.coalesce(func.sum(usage_records.c.prompt_tokens), 0),
            func.coalesce(func.sum(usage_records.c.completion_tokens), 0),
            func.coalesce(func.sum(usage_records.c.cost_usd), 0))
    async with db.connect() as conn:
        runs, calls, prompt, completion, cost = (await conn.execute(
            select(*cols).where(usage_records.c.user_id == uid))).one()
        by_model = (await conn.execute(
            select(usage_records.c.model, *cols[1:]).where(usage_records.c.user_id == uid)
            .group_by(usage_records.c.model).order_by(usage_records.c.model))).all()
    return {"user_id": user_id, "runs": runs, "llm_calls": calls, "prompt_tokens": int(prompt),
            "completion_tokens": int(completion), "cost_usd": money(Decimal(cost)),
            "by_model": [{"model": m, "llm_calls": n, "prompt_tokens": int(p), "completion_tokens": int(c),
                          "cost_usd": money(Decimal(x))} for m, n, p, c, x in by_model]}

