"""Login rate limits (per email, per client IP) and lockout after repeated failures, in Redis.

Limits are fixed windows: the first attempt of a window sets the key's TTL, so every key
expires on its own. A lockout is a key with its own TTL; a success clears the failure count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

from app.common.settings import AuthSettings


@dataclass(frozen=True)
class Refusal:
    reason: str  # "rate_limited" or "locked_out"
    scope: str  # "email" or "ip"
    retry_after_s: int


def email_key(email: str) -> str:
    # Hashed so Redis never holds the address itself.
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class LoginLimiter:
    def __init__(self, redis: Redis, settings: AuthSettings):
        self.redis = redis
        self.s = settings

    async def admit(self, email: str, ip: str) -> Refusal | None:
        """Count one login attempt; say why it must be refused, if it must."""
        ek = email_key(email)
        lock_ttl = await self.redis.ttl(f"auth:lockout:{ek}")
        if lock_ttl > 0:
            return Refusal("locked_out", "email", lock_ttl)
        for scope, ident, limit in (("email", ek, self.s.login_rate_email), ("ip", ip, self.s.login_rate_ip)):
            key = f"auth:rl:{scope}:{ident}"
            async with self.redis.pipeline(transaction=True) as p:
                # SET NX starts the window with its TTL; INCR keeps that TTL (Redis 6 has no EXPIRE NX).
                p.set(key, 0, ex=self.s.login_rate_window_s, nx=True)
                p.incr(key)
                p.ttl(key)
                _, count, ttl = await p.execute()
            if count > limit:
                return Refusal("rate_limited", scope, max(int(ttl), 1))
        return None

    async def failed(self, email: str) -> None:
        ek = email_key(email)
        key = f"auth:failures:{ek}"
        async with self.redis.pipeline(transaction=True) as p:
            p.incr(key)
            p.expire(key, self.s.lockout_s)
            count, _ = await p.execute()
        if count >= self.s.lockout_threshold:
            async with self.redis.pipeline(transaction=True) as p:
                p.set(f"auth:lockout:{ek}", 1, ex=self.s.lockout_s)
                p.delete(key)
                await p.execute()

    async def succeeded(self, email: str) -> None:
        await self.redis.delete(f"auth:failures:{email_key(email)}")

    async def forget(self, email: str) -> None:
        """Drop the email's counters and lockout (its account is deleted: a new one starts clean)."""
        ek = email_key(email)
        await self.redis.delete(f"auth:rl:email:{ek}", f"auth:failures:{ek}", f"auth:lockout:{ek}")
