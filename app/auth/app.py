"""The FastAPI application: middleware, error handlers, routers, and process-wide context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.auth import service_clients
from app.common import errors, middleware, tracing
from app.common.live_config import LiveConfig
from app.auth.context import Context
from app.auth.oidc import OidcClient
from app.auth.routers import account, admin, email, health, oidc, public, service, sessions
from app.common.settings import AuthSettings


def create_app(settings: AuthSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        c = Context.build(settings)
        app.state.ctx = c
        app.state.live_config = LiveConfig("auth", c.redis, lambda: c.settings, lambda s: setattr(c, "settings", s))
        app.state.live_config.start()
        health.state.set(c)
        app.state.oidc = (OidcClient(settings, c.http, c.redis)
                          if settings.oidc_provider_url and settings.oidc_client_id else None)
        try:
            async with c.db.begin() as conn:
                await service_clients.seed(conn, settings, c.passwords)
            yield
        finally:
            await app.state.live_config.stop()
            await c.close()
            if provider is not None:
                provider.shutdown()

    app = FastAPI(title="auth", version=settings.version, lifespan=lifespan,
                  docs_url="/docs" if settings.is_local else None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.is_local else None)
    errors.install(app, http_dependency="oidc")
    for r in (public.router, account.router, sessions.router, admin.router, service.router, oidc.router,
              health.router, email.router):
        app.include_router(r)
    middleware.install(app, settings.cors_origins, settings.max_body_bytes)
    app.add_middleware(health.metrics.middleware_class, metrics=health.metrics)
    provider = tracing.install(app, settings, "auth", "auth")
    return app
