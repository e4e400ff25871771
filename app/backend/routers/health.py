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


@router.get("/health/ready")
async def ready(c: Context = Depends(ctx)) -> JSONResponse:
    pg, redis, clickhouse = await asyncio.gather(_probe(_postgres(c)), _probe(c.redis.ping()), _clickhouse(c))
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
                         "checks": {"postgres": pg, "redis": redis, "auth": auth, "events": events,
                                    "clickhouse": clickhouse}},
                        200 if ok else 503)


@router.get("/metrics")
async def prometheus() -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/metrics/circuit_breakers")
async def circuit_breakers(c: Context = Depends(ctx)) -> dict[str, Any]:
    return {"breakers": {name: b.snapshot() for name, b in c.breakers.items()}}
