"""Checkout sessions the platform creates, the hosted page a customer pays on, and the signed
webhook each payment sends to every endpoint the platform registered. `/_standin/*` shows the
event log with each delivery and redelivers an event (fresh signature, a shifted timestamp, or
the very bytes of an earlier delivery: a replay), as Stripe's dashboard "resend" does."""

from __future__ import annotations

import hmac
import json
import secrets
import time
from typing import Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from standins.payments.settings import PaymentsStandinSettings
from standins.payments.signing import HEADER, sign

DELIVERY_TIMEOUT_S = 10.0


class Endpoint(BaseModel):
    url: str = Field(min_length=8)


class SessionBody(BaseModel):
    client_reference_id: str = Field(min_length=1)
    amount_total: int = Field(ge=0)
    currency: str = "usd"
    metadata: dict[str, str] = {}


class Redelivery(BaseModel):
    # Sign as if sent this many seconds from now (negative: a stale timestamp).
    timestamp_offset_s: int = 0
    # Send the exact bytes and signature of the first delivery again (what an eavesdropper kept).
    replay: bool = False


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def create_app(settings: PaymentsStandinSettings) -> FastAPI:
    app = FastAPI(title="payments-standin", version=settings.version, docs_url=None, redoc_url=None)
    key = (settings.secret("api_key") or "").encode()
    whsec = settings.secret("webhook_secret") or ""
    endpoints: dict[str, str] = {}
    sessions: dict[str, dict[str, Any]] = {}
    events: dict[str, dict[str, Any]] = {}
    http = httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_S)

    def bearer(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise HTTPException(401, "Invalid API Key provided")

    async def deliver(event: dict[str, Any], body: bytes, header: str, ts: int) -> dict[str, Any]:
        out: dict[str, Any] = {"timestamp": ts, "signature": header, "attempts": []}
        for url in list(endpoints.values()):
            try:
                r = await http.post(url, content=body, headers={HEADER: header, "content-type": "application/json"})
                out["attempts"].append({"url": url, "status_code": r.status_code, "response": r.text[:500]})
                # The first endpoint that answers takes the event (two backends, one database).
                out["status_code"] = r.status_code
                out["response"] = r.text[:500]
                break
            except httpx.HTTPError as e:
                out["attempts"].append({"url": url, "error": type(e).__name__})
        event["deliveries"].append({**out, "body": body.decode()})
        return out

    async def send(event: dict[str, Any], offset_s: int = 0) -> dict[str, Any]:
        body = json.dumps({k: event[k] for k in ("id", "object", "type", "created", "data")}).encode()
        ts = int(time.time()) + offset_s
        return await deliver(event, body, sign(whsec, ts, body), ts)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": settings.version, "endpoints": len(endpoints)}

    @app.post("/v1/webhook_endpoints", dependencies=[Depends(bearer)])
    async def add_endpoint(body: Endpoint) -> dict[str, str]:
        eid = next((k for k, v in endpoints.items() if v == body.url), None) or _id("we")
        endpoints[eid] = body.url
        return {"id": eid, "url": body.url}

    @app.post("/v1/checkout/sessions", dependencies=[Depends(bearer)])
    async def create_session(body: SessionBody, request: Request) -> dict[str, Any]:
        sid = _id("cs")
        sessions[sid] = {"id": sid, "object": "checkout.session", "status": "open", "payment_status": "unpaid",
                         "client_reference_id": body.client_reference_id, "amount_total": body.amount_total,
                         "currency": body.currency, "metadata": body.metadata,
                         "url": f"{str(request.base_url).rstrip('/')}/pay/{sid}", "created": int(time.time())}
        return sessions[sid]

    @app.get("/v1/checkout/sessions/{sid}", dependencies=[Depends(bearer)])
    async def get_session(sid: str) -> dict[str, Any]:
        if sid not in sessions:
            raise HTTPException(404, f"No such checkout.session: {sid}")
        return sessions[sid]

    @app.post("/pay/{sid}")
    async def pay(sid: str) -> dict[str, Any]:
        """The customer's "Pay" on the hosted page: the session completes and its webhook goes out."""
        session = sessions.get(sid)
        if session is None:
            raise HTTPException(404, f"No such checkout.session: {sid}")
        if session["status"] != "open":
            raise HTTPException(409, f"checkout.session {sid} is {session['status']}")
        session |= {"status": "complete", "payment_status": "paid"}
        event = {"id": _id("evt"), "object": "event", "type": "checkout.session.completed",
                 "created": int(time.time()), "data": {"object": dict(session)}, "deliveries": []}
        events[event["id"]] = event
        return {"event_id": event["id"], "delivery": await send(event)}

    @app.get("/_standin/events", dependencies=[Depends(bearer)])
    async def list_events(client_reference_id: str | None = None) -> dict[str, Any]:
        return {"events": [e for e in events.values() if client_reference_id is None
                           or e["data"]["object"].get("client_reference_id") == client_reference_id]}

    @app.post("/_standin/events/{eid}/deliver", dependencies=[Depends(bearer)])
    async def redeliver(eid: str, body: Redelivery) -> dict[str, Any]:
        event = events.get(eid)
        if event is None:
            raise HTTPException(404, f"No such event: {eid}")
        if body.replay:
            first = event["deliveries"][0]
            return await deliver(event, first["body"].encode(), first["signature"], first["timestamp"])
        return await send(event, body.timestamp_offset_s)

    @app.on_event("shutdown")
    async def close() -> None:
        await http.aclose()

    return app
