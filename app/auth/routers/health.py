"""Auth's operator endpoints: its effective configuration (admins), hot reload of the reloadable
subset, and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel

from app.auth.context import Context
from app.auth.deps import Claims, ctx, require_permission
from app.common import config_report
from app.common.http_metrics import LiveState, ServiceMetrics, StateCollector

router = APIRouter(tags=["health"])

registry = CollectorRegistry()
metrics = ServiceMetrics(registry)
state = LiveState()
registry.register(StateCollector(state.breakers, state.pools))


@router.get("/health/config")
async def config(request: Request, _: Claims = Depends(require_permission("users:role")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    """The effective non-secret configuration, where each value came from, and its hash."""
    live = request.app.state.live_config
    return {**config_report.report(c.settings, "auth", live.reloaded), "config_version": live.version}


class ConfigChange(BaseModel):
    changes: dict[str, Any]


@router.patch("/auth/admin/config")
async def change_config(body: ConfigChange, request: Request,
                        _: Claims = Depends(require_permission("users:role"))) -> dict[str, Any]:
    return await request.app.state.live_config.change(body.changes)


@router.delete("/auth/admin/config")
async def reset_config(request: Request, _: Claims = Depends(require_permission("users:role"))) -> dict[str, Any]:
    return await request.app.state.live_config.reset()


@router.get("/metrics")
async def prometheus() -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
