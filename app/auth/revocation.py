"""The token deny-list: one Redis key per revoked jti, living exactly as long as the token."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from app.common.auth_keys import denied


class DenyList:
    def __init__(self, redis: Redis):
        self.redis = redis

    async def deny(self, jti: str, exp: int) -> None:
        remaining = int(exp - time.time()) + 1
        if remaining > 0:
            await self.redis.set(denied(jti), 1, ex=remaining)

    async def denied(self, jti: str) -> bool:
        return bool(await self.redis.exists(denied(jti)))
