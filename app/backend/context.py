"""What the backend's handlers share, built once per process and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.backend.auth_client import AuthClient
from app.backend.breaker import CircuitBreaker, PeerFailure
from app.backend.db import make_engine
from app.backend.tokens import TokenVerifier
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

    @classmethod
    def build(cls, settings: BackendSettings) -> Context:
        t = settings.dependency_timeout_s
        redis = Redis.from_url(settings.redis_url, password=settings.secret("redis_password"),
                               socket_timeout=t, socket_connect_timeout=t)
        http = httpx.AsyncClient()
        breaker = CircuitBreaker("auth", settings.breaker_failure_threshold, settings.breaker_reset_s,
                                 counted=(PeerFailure, httpx.TransportError, OSError, TimeoutError))
        auth = AuthClient(settings, http, breaker)
        return cls(settings=settings, db=make_engine(settings), redis=redis, http=http,
                   breakers={"auth": breaker}, auth=auth,
                   verifier=TokenVerifier(auth, redis, settings.issuer, settings.audience))

    async def close(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()
        await self.db.dispose()
