"""Liveness, readiness per dependency (with latency), and the circuit breakers' state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.backend import metrics
from app.backend.context import Context
from app.backend.deps import ctx

router = APIRouter(tags=["health"])

READY_TIMEOUT_S = 2.0


async def _probe(call: Awaitable[object]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(call, READY_TIMEOUT_S)
        status = "ok"
    except Exception as e:  # any failure of a dependency is "not ready", reported by name
        status = f"down: {type(e).__name__}"
    return {"status": status, "latency_ms": round((time.perf_counter() - t0) * 1000, 2)}


async def _postgres(c: Context) -> None:
    async with c.db.connect() as conn:
        await conn.execute(text("SELECT 1"))


@router.get("/health/live")
async def live(c: Context = Depends(ctx)) -> dict[str, str]:
    return {"status": "ok", "version": c.settings.version}


@router.get("/health/ready")
async def ready(c: Context = Depends(ctx)) -> JSONResponse:
    pg, redis = await asyncio.gather(_probe(_postgres(c)), _probe(c.redis.ping()))
    breaker = c.breakers["auth"].state.value
    age = c.auth.jwks_age_s
    # Auth is not called here: with its keys cached the backend verifies tokens on its own, so
    # auth being away degrades (no new keys, no online checks) but does not stop the backend.
    auth = {"status": "ok" if breaker == "closed" and age is not None else "degraded", "breaker": breaker,
            "jwks_keys": len(c.auth.cached_kids), "jwks_age_s": None if age is None else round(age, 1),
            "jwks_ttl_s": c.settings.jwks_ttl_s, "token_leeway_s": c.settings.token_leeway_s, "jwks_min_refresh_s": c.settings.jwks_min_refresh_s}
    ok = pg["status"] == "ok" and redis["status"] == "ok" and bool(c.auth.cached_kids)
    # Without Redis events still reach this instance's sockets, not the other instances'.
    events = {"status": "ok" if c.hub.listening and c.breakers["redis"].state.value == "closed" else "degraded",
              "subscribed": c.hub.listening, "breaker": c.breakers["redis"].state.value,
              "connections": len(c.hub.conns), "instance_id": c.settings.instance_id}
    return JSONResponse({"status": "ready" if ok else "not_ready", "version": c.settings.version,
                         "checks": {"postgres": pg, "redis": redis, "auth": auth, "events": events}},
                        200 if ok else 503)


@router.get("/metrics")
async def prometheus() -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/metrics/circuit_breakers")
async def circuit_breakers(c: Context = Depends(ctx)) -> dict[str, Any]:
    return {"breakers": {name: b.snapshot() for name, b in c.breakers.items()}}
