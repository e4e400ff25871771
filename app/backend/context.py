"""What the backend's handlers share, built once per process and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.exceptions import RedisError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.backend.auth_client import AuthClient
from app.backend.breaker import CircuitBreaker, PeerFailure
from app.backend.db import make_engine
from app.backend.events import EventBus
from app.backend.runs import Runner
from app.backend.tokens import TokenVerifier
from app.backend.ws.hub import Hub
from app.common.redis_client import make_redis
from app.common.settings import BackendSettings


@dataclass
class Context:
    settings: BackendSettings
    db: AsyncEngine
    redis: Redis
    http: httpx.AsyncClient
    breakers: dict[str, CircuitBreaker]
    auth: AuthClient
    verifier: TokenVerifier
    hub: Hub
    bus: EventBus
    runner: Runner

    @classmethod
    def build(cls, settings: BackendSettings) -> Context:
        t = settings.dependency_timeout_s
        redis = make_redis(settings.redis_url, settings.secret("redis_password"), t)
        http = httpx.AsyncClient()
        breaker = CircuitBreaker("auth", settings.breaker_failure_threshold, settings.breaker_reset_s,
                                 counted=(PeerFailure, httpx.TransportError, OSError, TimeoutError))
        auth = AuthClient(settings, http, breaker)
        events_breaker = CircuitBreaker("redis", settings.redis_breaker_failure_threshold,
                                        settings.redis_breaker_reset_s,
                                        counted=(RedisError, OSError, TimeoutError))
        db = make_engine(settings)
        hub = Hub(redis)
        bus = EventBus(redis, hub, events_breaker, settings.ws_replay_len, settings.instance_id)
        return cls(settings=settings, db=db, redis=redis, http=http,
                   breakers={"auth": breaker, "redis": events_breaker}, auth=auth,
                   verifier=TokenVerifier(auth, redis, settings.issuer, settings.audience), hub=hub, bus=bus,
                   runner=Runner(db, redis, bus, settings.instance_id, settings.run_step_delay_ms))

    async def close(self) -> None:
        await self.runner.stop_all()
        await self.hub.stop()
        await self.http.aclose()
        await self.redis.aclose()
        await self.db.dispose()
