"""Liveness, readiness per dependency (with latency), and the circuit breakers' state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.backend import metrics
from app.common.redis_client import pool_stats
from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.tokens import Principal
from app.common import config_report, pool

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


PLATFORM_TABLES = ("workload_events", "usage_events", "corpus")


async def _clickhouse(c: Context) -> dict[str, Any]:
    """Latency (as the reader), active parts of the platform's tables (as the admin), and the
    last insert: too many parts in a partition, or a failing insert, is degraded."""
    ch, s = c.clickhouse, c.settings
    probe = await _probe(ch.ping_ms())
    report: dict[str, Any] = {**probe, "parts_degraded_at": s.clickhouse_parts_degraded_at,
                              "retention_days": s.workload_retention_days,
                              "batch_max_rows": s.events_batch_max_rows, "batch_max_bytes": s.events_batch_max_bytes,
                              "writer_user": s.clickhouse_writer_user, "reader_user": s.clickhouse_reader_user,
                              "inserts": {"ok": ch.inserts.ok, "failed": ch.inserts.failed,
                                          "last_failed": ch.inserts.last_failed}}
    if probe["status"] != "ok":
        return report
    try:
        rows = await asyncio.wait_for(ch.query(
            "SELECT table, sum(n) AS parts, max(n) AS worst FROM (SELECT table, partition, count() AS n "
            "FROM system.parts WHERE database = currentDatabase() AND active AND table IN {tables:Array(String)} "
            "GROUP BY table, partition) GROUP BY table", {"tables": list(PLATFORM_TABLES)}, role="admin"),
            READY_TIMEOUT_S)
    except Exception as e:
        return {**report, "status": f"down: {type(e).__name__}"}
    parts = {t: 0 for t in PLATFORM_TABLES} | {r["table"]: int(r["parts"]) for r in rows}
    worst = max((int(r["worst"]) for r in rows), default=0)
    degraded = worst > s.clickhouse_parts_degraded_at or ch.inserts.last_failed
    return {**report, "status": "degraded" if degraded else "ok", "active_parts": parts,
            "max_parts_in_partition": worst}


@router.get("/health/live")
async def live(c: Context = Depends(ctx)) -> dict[str, str]:
    return {"status": "ok", "version": c.settings.version}


async def _llm(c: Context) -> None:
    key = c.settings.secret("llm_api_key")
    resp = await c.http.get(f"{c.settings.llm_base_url.rstrip('/')}/models", timeout=READY_TIMEOUT_S,
                            headers={"Authorization": f"Bearer {key}"} if key else {})
    resp.raise_for_status()


async def _auth_live(c: Context) -> None:
    # Outside the breaker: readiness reports whether auth answers, the breaker what callers meet.
    (await c.http.get(f"{c.settings.auth_url.rstrip('/')}/health/live", timeout=READY_TIMEOUT_S)).raise_for_status()


def dependency(name: str, probe: dict[str, Any], required: bool, breaker: str | None = None,
               status: str | None = None) -> dict[str, Any]:
    """One entry of the dependency map: ok, degraded or down, whether readiness needs it, how long
    its probe took and its breaker's state (None: calls to it go through no breaker)."""
    raw = status or probe["status"]
    state = "ok" if raw == "ok" else "degraded" if raw == "degraded" else "down"
    metrics.service.dependency_latency.labels(name).observe(probe["latency_ms"] / 1000)
    return {"status": state, "required": required, "latency_ms": probe["latency_ms"], "breaker": breaker,
            **({"detail": raw} if state == "down" else {})}


@router.get("/health/ready")
async def ready(request: Request, c: Context = Depends(ctx)) -> JSONResponse:
    pg, redis, clickhouse, llm, auth_probe = await asyncio.gather(
        _probe(_postgres(c)), _probe(c.redis.ping()), _clickhouse(c), _probe(_llm(c)), _probe(_auth_live(c)))
    pg["pool"] = pool.stats(c.db)
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
    llm_breaker = c.breakers["llm"].state.value
    # The dependency map: required ones down make this instance not ready (503, named in `down`);
    # optional ones down or degraded leave it serving, named in `degraded`.
    deps = {
        "postgres": dependency("postgres", pg, True),
        "redis": dependency("redis", redis, True, breaker=c.breakers["redis"].state.value),
        "auth": dependency("auth", auth_probe, False, breaker=breaker,
                           status="degraded" if auth_probe["status"] == "ok" and auth["status"] != "ok" else None),
        "clickhouse": dependency("clickhouse", clickhouse, False),
        "llm": dependency("llm", llm, False, breaker=llm_breaker,
                          status="degraded" if llm["status"] == "ok" and llm_breaker != "closed" else None),
    }
    down = sorted(n for n, d in deps.items() if d["required"] and d["status"] == "down")
    if not c.auth.cached_kids:
        down.append("auth")  # no keys at all: no token can be verified
    degraded = sorted(n for n, d in deps.items() if n not in down and d["status"] != "ok")
    return JSONResponse({"status": "ready" if ok else "not_ready", "version": c.settings.version,
                         "health": "down" if down else "degraded" if degraded else "ok",
                         "down": down, "degraded": degraded, "dependencies": deps,
                         "checks": {"postgres": pg, "redis": redis, "auth": auth, "events": events,
                                    "clickhouse": clickhouse, "llm": llm},
                         # Redis subscriptions: each is made again after Redis comes back, each on its own clock.
                         "listeners": {"events": c.hub.listening, "signing_keys": request.app.state.key_changes.listening,
                                       "config": request.app.state.live_config.listening}},
                        200 if ok else 503)


@router.get("/health/config")
async def config(request: Request, _: Principal = Depends(require_permission("users:role")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    """The effective non-secret configuration, where each value came from, and its hash."""
    live = request.app.state.live_config
    return {**config_report.report(c.settings, "backend", live.reloaded), "instance_id": c.settings.instance_id,
            "config_version": live.version}


class ConfigChange(BaseModel):
    changes: dict[str, Any]


@router.patch("/api/admin/config")
async def change_config(body: ConfigChange, request: Request, _: Principal = Depends(require_permission("users:role")),
                        c: Context = Depends(ctx)) -> dict[str, Any]:
    """Hot reload (settings.RELOADABLE only), validated first, applied on every instance."""
    changed = await request.app.state.live_config.change(body.changes)
    return {**changed, "hash": config_report.report(c.settings, "backend", set(changed["changes"]))["hash"]}


@router.delete("/api/admin/config")
async def reset_config(request: Request, _: Principal = Depends(require_permission("users:role")),
                       c: Context = Depends(ctx)) -> dict[str, Any]:
    """Every instance back to the configuration it started with."""
    return await request.app.state.live_config.reset()


@router.get("/metrics")
async def prometheus(c: Context = Depends(ctx)) -> Response:
    for state, n in pool_stats(c.redis).items():
        metrics.redis_pool.labels(state=state).set(n)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health/leader")
async def leader(c: Context = Depends(ctx)) -> dict[str, Any]:
    """This instance's view of the leader lease, and the lease as Redis holds it."""
    own = c.runner.leader
    if own is None:
        return {"instance_id": c.settings.instance_id, "leading": False, "holder": None}
    return {**own.public(), "holder": await own.holder()}


@router.get("/api/metrics/circuit_breakers")
async def circuit_breakers(c: Context = Depends(ctx)) -> dict[str, Any]:
    return {"breakers": {name: b.snapshot() for name, b in c.breakers.items()}}
