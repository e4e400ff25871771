"""Everything a request handler needs, built once per process and torn down at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.audit import AuditLog
from app.auth.db import make_audit_engine, make_engine
from app.auth.keys import KeyRing
from app.auth.passwords import Passwords
from app.auth.ratelimit import LoginLimiter
from app.auth.revocation import DenyList
from app.auth.sessions import SessionStore
from app.auth.tokens import TokenService
from app.common.mail import Mailer
from app.common.redis_client import service_redis
from app.common.settings import AuthSettings


@dataclass
class Context:
    settings: AuthSettings
    db: AsyncEngine
    redis: Redis
    keys: KeyRing
    tokens: TokenService
    sessions: SessionStore
    deny: DenyList
    limiter: LoginLimiter
    audit: AuditLog
    http: httpx.AsyncClient
    passwords: Passwords
    mailer: Mailer

    @classmethod
    def build(cls, settings: AuthSettings) -> Context:
        t = settings.dependency_timeout_s
        redis = service_redis(settings, "auth")
        keys = KeyRing(settings.key_dir)
        return cls(
            settings=settings, db=make_engine(settings), redis=redis, keys=keys,
            tokens=TokenService(keys, settings.issuer, settings.audience, settings.token_leeway_s),
            sessions=SessionStore(redis, settings.refresh_ttl_s, settings.session_max),
            deny=DenyList(redis, replicas=1 if settings.redis_sentinels else 0), limiter=LoginLimiter(redis),
            audit=AuditLog(make_audit_engine(settings)), http=httpx.AsyncClient(timeout=t),
            passwords=Passwords.of(settings), mailer=Mailer(settings, t),
        )

    async def close(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()
        await self.db.dispose()
        await self.audit.engine.dispose()
