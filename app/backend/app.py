"""The backend's FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text

from app.backend.context import Context
from app.backend.deletions import DeletionConsumer
from app.backend.key_changes import key_changes
from app.backend.routers import (admin, agents, analytics, billing, corpus, events, health, internal, providers, runs,
                                 teams, threads, users)
from app.backend.ws import router as ws
from app.backend import metrics
from app.common import errors, middleware, tracing
from app.common.http_metrics import StateCollector
from app.common.live_config import LiveConfig
from app.common.clickhouse_schema import migrate
from app.common.errors import ApiError
from app.common.settings import BackendSettings

log = logging.getLogger("app.backend")

# Instances starting together apply the ClickHouse migrations one after the other.
CLICKHOUSE_MIGRATIONS_LOCK = 0x636B6D67  # "ckmg"


async def migrate_clickhouse(c: Context) -> None:
    async with c.db.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": CLICKHOUSE_MIGRATIONS_LOCK})
        try:
            await migrate(c.clickhouse)
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": CLICKHOUSE_MIGRATIONS_LOCK})


def create_app(settings: BackendSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        c = Context.build(settings)
        app.state.ctx = c
        # Hot-reloadable settings replace c.settings (and the runner's) as a whole (app.common.live_config).
        app.state.live_config = LiveConfig("backend", c.redis, lambda: c.settings, c.reload)
        app.state.live_config.start()
        metrics.state.set(c)
        c.hub.start()
        app.state.key_changes = key_changes(c.redis, c.auth, c.settings.redis_retry_max_s)
        app.state.key_changes.start()
        try:
            await c.auth.refresh_jwks()
        except ApiError as e:
            # Not fatal: readiness says not_ready until the first verification fetches the keys.
            log.warning("no JWKS at startup: %s", e.detail)
        try:
            await migrate_clickhouse(c)
        except Exception as e:  # runs still start; their ClickHouse writes fail and are logged
            log.warning("ClickHouse schema not ensured at startup: %s", e)
        interrupted = await c.runner.recover()
        if interrupted:
            log.warning("failed %d run(s) this instance owned before it restarted", interrupted)
        c.runner.start_background()
        deletions = DeletionConsumer(c)
        deletions.start()
        try:
            yield
        finally:
            await deletions.stop()
            await app.state.key_changes.stop()
            await app.state.live_config.stop()
            await c.close()
            if provider is not None:
                provider.shutdown()  # the last batch of spans, exported before the process ends

    app = FastAPI(title="backend", version=settings.version, lifespan=lifespan,
                  docs_url="/docs" if settings.is_local else None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.is_local else None)
    errors.install(app, http_dependency="auth")
    for r in (health.router, users.router, threads.router, runs.router, admin.router, internal.router, agents.router,
              events.router, analytics.router, corpus.router, billing.router, providers.router,
              teams.router, ws.router):
        app.include_router(r)
    middleware.install(app, settings.cors_origins, settings.max_body_bytes,
                       {events.BATCH_PATH: settings.events_batch_max_bytes})
    app.add_middleware(metrics.service.middleware_class, metrics=metrics.service)
    provider = tracing.install(app, settings, "backend", settings.instance_id)
    return app
