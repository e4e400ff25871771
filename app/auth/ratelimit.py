"""Login rate limits (per email, per client IP) and lockout after repeated failures, in Redis.

Both are windows of the platform's one counter (app.common.ratelimit): attempts per window, and
failures within `lockout_s` of the first. A lockout is a key with its own TTL; a success clears
the failure count. Each call is given the settings in force, so a hot reload of the limits
(app.common.live_config) takes effect on the next attempt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

from app.common.ratelimit import FixedWindow
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
    def __init__(self, redis: Redis):
        self.redis = redis
        self.window = FixedWindow(redis)

    async def admit(self, s: AuthSettings, email: str, ip: str) -> Refusal | None:
        """Count one login attempt; say why it must be refused, if it must."""
        ek = email_key(email)
        lock_ttl = await self.redis.ttl(f"auth:lockout:{ek}")
        if lock_ttl > 0:
            return Refusal("locked_out", "email", lock_ttl)
        for scope, ident, limit in (("email", ek, s.login_rate_email), ("ip", ip, s.login_rate_ip)):
            w = await self.window.hit(f"auth:rl:{scope}:{ident}", s.login_rate_window_s)
            if w.count > limit:
                return Refusal("rate_limited", scope, w.left_s)
        return None

    async def failed(self, s: AuthSettings, email: str) -> None:
        ek = email_key(email)
        key = f"auth:failures:{ek}"
        if (await self.window.hit(key, s.lockout_s)).count >= s.lockout_threshold:
            async with self.redis.pipeline(transaction=True) as p:
                p.set(f"auth:lockout:{ek}", 1, ex=s.lockout_s)
                p.delete(key)
                await p.execute()

    async def succeeded(self, email: str) -> None:
        await self.redis.delete(f"auth:failures:{email_key(email)}")

    async def forget(self, email: str) -> None:
        """Drop the email's counters and lockout (its account is deleted: a new one starts clean)."""
        ek = email_key(email)
        await self.redis.delete(f"auth:rl:email:{ek}", f"auth:failures:{ek}", f"auth:lockout:{ek}")
