"""The agents as the API shows them: the registry, usage and plans, and the supply catalog."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from app.agents import usage
from app.backend.context import Context
from app.backend.repositories import plans
from app.backend.deps import ctx, require_permission
from app.backend.tokens import Principal
from app.common.errors import ApiError
from app.common.text import StorableStr

router = APIRouter(tags=["agents"])


@router.get("/health/agents")
async def agents(c: Context = Depends(ctx)) -> dict[str, Any]:
    s = c.settings
    return {"agents": [a.public() for a in c.agents.listed()],
            "llm": {"model": s.llm_model, "fallback_model": s.llm_fallback_model,
                    "breaker": c.breakers["llm"].state.value},
            # The limits a run is held to, and the clocks of this instance a client may wait on.
            "limits": {"step_timeout_s": s.agent_step_timeout_s, "run_timeout_s": s.agent_run_timeout_s,
                       "context_max_tokens": s.agent_context_max_tokens,
                       "input_timeout_s": s.agent_input_timeout_s,
                       # How long a run may go without renewing its lease before any instance fails it.
                       "run_lease_s": s.run_lease_s,
                       "price_cache_ttl_s": s.price_cache_ttl_s,
                       "llm_backoff_s": s.llm_backoff_s, "llm_breaker_reset_s": s.llm_breaker_reset_s}}


@router.get("/api/usage")
async def my_usage(who: Principal = Depends(require_permission("profile:read")),
                   c: Context = Depends(ctx)) -> dict[str, Any]:
    """Everything the caller's runs consumed: model calls, tokens and cost, in total and per model."""
    return await usage.totals(c.db, who.sub)


@router.get("/api/users/me/plan")
async def my_plan(who: Principal = Depends(require_permission("profile:read")),
                  c: Context = Depends(ctx)) -> dict[str, Any]:
    return await usage.plan_status(c.db, c.settings, who.sub)


class PlanBody(BaseModel):
    plan: str = Field(min_length=1, max_length=16)
    # the plan's version as read (GET .../plan); the change applies only to that version
    version: int | None = Field(None, ge=0, le=2**31 - 1)


@router.put("/api/admin/users/{user_id}/plan")
async def set_plan(user_id: uuid.UUID, body: PlanBody, _: Principal = Depends(require_permission("users:role")),
                   c: Context = Depends(ctx)) -> dict[str, Any]:
    if body.plan not in c.settings.plan_runs_per_day:
        raise ApiError(422, "unknown_plan", f"plan must be one of {', '.join(c.settings.plan_runs_per_day)}")
    try:
        async with c.db.begin() as conn:
            await plans.set_plan(conn, str(user_id), body.plan, body.version)
    except plans.StaleVersion as e:
        raise ApiError(409, "version_conflict", f"the plan is at version {e.current}, not {body.version}",
                       current_version=e.current) from None
    return await usage.plan_status(c.db, c.settings, str(user_id))


@router.get("/api/supply/models")
async def models(_: Principal = Depends(require_permission("profile:read")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    return {"models": [p.public() for p in await c.catalog.all()]}


@router.get("/api/supply/models/{model}")
async def model(model: str, _: Principal = Depends(require_permission("profile:read")),
                c: Context = Depends(ctx)) -> dict[str, Any]:
    price, cached = await c.catalog.get(model)
    if price is None:
        raise ApiError(404, "not_found", f"no model {model!r} in the supply catalog")
    return {**price.public(), "cached": cached}


@router.get("/api/supply/models/{model}/history")
async def history(model: str, _: Principal = Depends(require_permission("profile:read")),
                  c: Context = Depends(ctx)) -> dict[str, Any]:
    return {"model": model, "history": await c.catalog.history(model)}


class PriceBody(BaseModel):
    input_usd_per_mtok: Decimal = Field(ge=0, le=10000, max_digits=20, decimal_places=10)
    output_usd_per_mtok: Decimal = Field(ge=0, le=10000, max_digits=20, decimal_places=10)
    source: StorableStr = Field(min_length=1, max_length=500)
    provider: StorableStr | None = Field(None, min_length=1, max_length=100)
    tier: int | None = Field(None, ge=0, le=5)


@router.put("/api/admin/supply/models/{model}")
async def set_price(model: str, body: PriceBody, who: Principal = Depends(require_permission("users:role")),
                    c: Context = Depends(ctx)) -> dict[str, Any]:
    if not 1 <= len(model) <= 100:
        raise ApiError(422, "invalid_model", "a model name has 1 to 100 characters")
    price, change = await c.catalog.set_price(model, body.input_usd_per_mtok, body.output_usd_per_mtok, body.source,
                                              by=f"admin:{who.sub}", provider=body.provider, tier=body.tier)
    return {**price.public(), **change}


@router.delete("/api/admin/supply/models/{model}", status_code=204)
async def remove_model(model: str, _: Principal = Depends(require_permission("users:role")),
                       c: Context = Depends(ctx)) -> Response:
    if not await c.catalog.remove(model):
        raise ApiError(404, "not_found", f"no model {model!r} in the supply catalog")
    return Response(status_code=204)
