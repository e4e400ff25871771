"""Buying a plan: checkout at the payment provider, and its signed webhook applied once.

The webhook is Stripe's scheme: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
A signature that does not match, or a timestamp further than the tolerance from now, is
refused before the body is read as JSON. An event id seen before is acknowledged and not
applied again; the first delivery records the event, completes the session, upgrades the plan
and writes the invoice in one transaction, so a crash in between applies nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.common.settings import BackendSettings
from app.backend.repositories import plans
from app.common.tables import billing_events, checkout_sessions, invoices

SIGNATURE_HEADER = "stripe-signature"


class SignatureError(Exception):
    """Why a webhook was refused: `code` for the API, the message for its caller."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class ProviderError(Exception):
    pass


def verify_signature(secret: str, header: str, body: bytes, tolerance_s: int, now: float | None = None) -> None:
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        ts = int(parts["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("invalid_signature", "the signature header has no timestamp") from None
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise SignatureError("invalid_signature", "no v1 signature matches the payload")
    if abs((now or time.time()) - ts) > tolerance_s:
        raise SignatureError("stale_timestamp", f"the signed timestamp is more than {tolerance_s} s from now")


async def create_checkout(db: AsyncEngine, http: httpx.AsyncClient, s: BackendSettings, user_id: str,
                          plan: str) -> dict[str, Any]:
    amount = s.plan_prices_cents[plan]
    try:
        r = await http.post(f"{(s.payments_url or '').rstrip('/')}/v1/checkout/sessions", timeout=s.dependency_timeout_s,
                            headers={"Authorization": f"Bearer {s.secret('payments_api_key') or ''}"},
                            json={"client_reference_id": user_id, "amount_total": amount, "currency": "usd",
                                  "metadata": {"plan": plan}})
    except httpx.HTTPError as e:
        raise ProviderError(f"the payment provider is unreachable ({type(e).__name__})") from None
    if r.status_code != 200:
        raise ProviderError(f"the payment provider refused the checkout ({r.status_code})")
    session = r.json()
    async with db.begin() as conn:
        await conn.execute(checkout_sessions.insert().values(id=session["id"], user_id=uuid.UUID(user_id), plan=plan,
                                                            amount_cents=amount))
    return {"checkout_id": session["id"], "url": session["url"], "plan": plan, "amount_cents": amount,
            "currency": "usd"}


async def apply_event(db: AsyncEngine, s: BackendSettings, event: dict[str, Any]) -> dict[str, Any]:
    """Apply one verified event once; a second delivery of the same id changes nothing."""
    obj = event.get("data", {}).get("object", {})
    user = obj.get("client_reference_id")
    async with db.begin() as conn:
        first = (await conn.execute(pg_insert(billing_events).values(
            event_id=event["id"], type=event["type"], user_id=uuid.UUID(user) if user else None)
            .on_conflict_do_nothing().returning(billing_events.c.event_id))).first()
        if first is None:
            return {"received": True, "duplicate": True}
        if event["type"] != "checkout.session.completed":
            return {"received": True, "ignored": event["type"]}
        session = (await conn.execute(select(checkout_sessions).where(checkout_sessions.c.id == obj["id"])
                                      .with_for_update())).first()
        if session is None or str(session.user_id) != user:
            return {"received": True, "ignored": "unknown checkout session"}
        await conn.execute(update(checkout_sessions).where(checkout_sessions.c.id == session.id)
                           .values(status="complete", completed_at=datetime.now(timezone.utc)))
        period_end = datetime.now(timezone.utc) + timedelta(days=s.plan_period_days)
        await plans.upgrade_paid(conn, session.user_id, session.plan, period_end)
        await conn.execute(invoices.insert().values(user_id=session.user_id, plan=session.plan,
                                                    amount_cents=int(obj.get("amount_total", session.amount_cents)),
                                                    currency=obj.get("currency", "usd"), event_id=event["id"],
                                                    checkout_id=session.id))
    return {"received": True, "applied": True, "plan": session.plan}


def parse(body: bytes) -> dict[str, Any]:
    event = json.loads(body)
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise ValueError("not an event")
    return event


async def schedule_downgrade(db: AsyncEngine, s: BackendSettings, user_id: str) -> dict[str, Any] | None:
    """The plan becomes the default one when the paid period ends, not now: it was paid for."""
    async with db.begin() as conn:
        return await plans.schedule_downgrade(conn, user_id, s.default_plan)


async def list_invoices(db: AsyncEngine, user_id: str) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = (await conn.execute(select(invoices).where(invoices.c.user_id == uuid.UUID(user_id))
                                   .order_by(invoices.c.created_at))).all()
    return [{"id": r.id, "plan": r.plan, "amount_cents": r.amount_cents, "currency": r.currency,
             "checkout_id": r.checkout_id, "created_at": r.created_at.isoformat()} for r in rows]
