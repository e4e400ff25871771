"""Plans a user can buy, checkout, the payment provider's webhook, invoices, and downgrades.

An unverified account cannot buy (`email_unverified`): a payment needs an address that works.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from app.agents import usage
from app.backend import billing
from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.tokens import Principal
from app.common.errors import ApiError

router = APIRouter(prefix="/api/billing", tags=["billing"])
log = logging.getLogger("app.backend.billing")


class CheckoutBody(BaseModel):
    plan: str = Field(min_length=1, max_length=16)


def require_verified(who: Principal) -> None:
    if not who.claims.get("email_verified"):
        raise ApiError(403, "email_unverified", "verify your email address first (see the email we sent you)")


@router.get("/config")
async def config(c: Context = Depends(ctx)) -> dict[str, Any]:
    s = c.settings
    return {"plans": {p: {"runs_per_day": n, "price_cents": s.plan_prices_cents.get(p)}
                      for p, n in s.plan_runs_per_day.items()},
            "default_plan": s.default_plan, "period_days": s.plan_period_days,
            "webhook_tolerance_s": s.payments_webhook_tolerance_s, "enabled": s.payments_url is not None}


@router.post("/checkout", status_code=201)
async def checkout(body: CheckoutBody, who: Principal = Depends(require_permission("profile:read")),
                   c: Context = Depends(ctx)) -> dict[str, Any]:
    require_verified(who)
    if body.plan not in c.settings.plan_prices_cents:
        raise ApiError(422, "unknown_plan", f"plans for sale: {', '.join(c.settings.plan_prices_cents)}")
    if c.settings.payments_url is None:
        raise ApiError(503, "payments_disabled", "no payment provider is configured")
    try:
        return await billing.create_checkout(c.db, c.http, c.settings, who.sub, body.plan)
    except billing.ProviderError as e:
        raise ApiError(502, "payment_provider_error", str(e)) from None


@router.post("/webhook")
async def webhook(request: Request, c: Context = Depends(ctx)) -> dict[str, Any]:
    body = await request.body()
    secret = c.settings.secret("payments_webhook_secret")
    if not secret:
        raise ApiError(503, "payments_disabled", "no webhook secret is configured")
    try:
        billing.verify_signature(secret, request.headers.get(billing.SIGNATURE_HEADER, ""), body,
                                 c.settings.payments_webhook_tolerance_s)
        event = billing.parse(body)
    except billing.SignatureError as e:
        log.warning("payment webhook refused: %s", e.code)
        raise ApiError(400, e.code, str(e)) from None
    except ValueError:
        raise ApiError(400, "invalid_payload", "the body is not an event") from None
    return await billing.apply_event(c.db, c.settings, event)


@router.get("/invoices")
async def invoices(who: Principal = Depends(require_permission("profile:read")),
                   c: Context = Depends(ctx)) -> dict[str, Any]:
    return {"invoices": await billing.list_invoices(c.db, who.sub)}


@router.post("/downgrade")
async def downgrade(who: Principal = Depends(require_permission("profile:read")),
                    c: Context = Depends(ctx)) -> dict[str, Any]:
    scheduled = await billing.schedule_downgrade(c.db, c.settings, who.sub)
    if scheduled is None:
        raise ApiError(409, "no_paid_plan", "there is no paid plan to downgrade")
    return {**scheduled, "now": await usage.plan_status(c.db, c.settings, who.sub)}
