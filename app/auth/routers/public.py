"""Unauthenticated endpoints: JWKS, public configuration, liveness and readiness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.auth.context import Context
from app.auth.deps import ctx
from app.common import pool
from app.auth.routers import health
from app.common.jwt_rules import ALGORITHM

router = APIRouter(tags=["public"])

READY_TIMEOUT_S = 2.0


@router.get("/.well-known/jwks.json")
async def jwks(c: Context = Depends(ctx)) -> JSONResponse:
    # Short cache: verifiers pick up a rotation within a minute, and keep working if we are down.
    return JSONResponse({"keys": [k.jwk() for k in c.keys.published()]},
                        headers={"Cache-Control": "public, max-age=60"})


@router.get("/auth/config")
async def public_config(c: Context = Depends(ctx)) -> dict[str, Any]:
    s = c.settings
    return {
        "issuer": s.issuer, "audience": s.audience, "jwks_uri": "/.well-known/jwks.json",
        "algorithms": [ALGORITHM], "access_ttl_s": s.access_ttl_s, "refresh_ttl_s": s.refresh_ttl_s,
        "service_ttl_s": s.service_ttl_s, "key_activation_delay_s": s.key_activation_delay_s, "session_max": s.session_max, "session_overflow": "evict_oldest",
        "login_rate": {"per_email": s.login_rate_email, "per_ip": s.login_rate_ip,
                       "window_s": s.login_rate_window_s},
        "lockout": {"threshold": s.lockout_threshold, "duration_s": s.lockout_s},
        "password_min_length": s.password_min_length, "token_leeway_s": s.token_leeway_s,
        "password_hash": {"algorithm": "argon2id", "time_cost": s.password_time_cost,
                          "memory_kib": s.password_memory_kib, "parallelism": s.password_parallelism},
        "oidc_enabled": s.oidc_provider_url is not None,
        # Public anyway (a preflight answers with them); reported so a check can hold them to params.
        "browser_origins": s.cors_origins,
        # DELETE /auth/users/me and /auth/admin/users/{id}: an account and everything of its owner.
        "user_deletion": True, "reauth_max_age_s": s.reauth_max_age_s,
        # Verification and password-reset links: single use, within this; whether email goes out at all.
        "email_token_ttl_s": s.email_token_ttl_s, "email_enabled": s.smtp_host is not None,
        "env": s.env, "version": s.version,
    }


@router.get("/health/live")
async def live(c: Context = Depends(ctx)) -> dict[str, str]:
    return {"status": "ok", "version": c.settings.version}


async def _check(probe: Awaitable[object]) -> tuple[str, float]:
    """The probe's outcome and how long it took (ms)."""
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT_S)
        status = "ok"
    except Exception as e:  # any failure of a dependency is "not ready", reported by name
        status = f"down: {type(e).__name__}"
    return status, round((time.perf_counter() - t0) * 1000, 2)


async def _postgres(c: Context) -> None:
    async with c.db.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _keys(c: Context) -> None:
    c.keys.active()


async def _oidc(c: Context) -> None:
    url = c.settings.oidc_provider_url
    if url:
        (await c.http.get(f"{url.rstrip('/')}/.well-known/openid-configuration")).raise_for_status()


@router.get("/health/ready")
async def ready(request: Request, c: Context = Depends(ctx)) -> JSONResponse:
    names = ("postgres", "redis", "keys", "oidc")
    results = await asyncio.gather(_check(_postgres(c)), _check(c.redis.ping()), _check(_keys(c)),
                                   _check(_oidc(c)))
    checks = dict(zip(names, (status for status, _ in results)))
    if not c.settings.oidc_provider_url:
        checks["oidc"] = "not configured"
    # OIDC being down only breaks OIDC login, so it is reported but does not fail readiness.
    ok = all(checks[n] == "ok" for n in ("postgres", "redis", "keys"))
    required = {"postgres": True, "redis": True, "keys": True, "oidc": False}
    deps = {n: {"status": "ok" if checks[n] in ("ok", "not configured") else "down", "required": required[n],
                "latency_ms": ms, "breaker": None, **({"detail": checks[n]} if checks[n] != "ok" else {})}
            for n, (_, ms) in zip(names, results)}
    for n, d in deps.items():
        health.metrics.dependency_latency.labels(n).observe(d["latency_ms"] / 1000)
    down = sorted(n for n, d in deps.items() if d["required"] and d["status"] == "down")
    degraded = sorted(n for n, d in deps.items() if not d["required"] and d["status"] == "down")
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks,
                         "health": "down" if down else "degraded" if degraded else "ok", "down": down,
                         "degraded": degraded, "dependencies": deps, "postgres_pool": pool.stats(c.db),
                         "listeners": {"config": request.app.state.live_config.listening},
                         "version": c.settings.version}, 200 if ok else 503)
