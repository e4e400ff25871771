"""The token deny-list: one Redis key per revoked jti, living exactly as long as the token.

Replication is asynchronous: a primary that dies right after acknowledging a write may take it
along when Sentinel promotes its replica. A revocation must not be lost that way, so with a
replica (`replicas` > 0) each one waits (WAIT, bounded) until a replica has it too; the bound is
what Redis promises then: a revocation acknowledged here survives the loss of the primary.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from app.common.auth_keys import denied


class DenyList:
    def __init__(self, redis: Redis, replicas: int = 0, wait_ms: int = 500):
        self.redis, self.replicas, self.wait_ms = redis, replicas, wait_ms

    async def deny(self, jti: str, exp: int) -> None:
        remaining = int(exp - time.time()) + 1
        if remaining > 0:
            await self.redis.set(denied(jti), 1, ex=remaining)
            await self.replicated()

    async def replicated(self) -> int:
        """Wait (bounded) until a replica holds what this process wrote; how many did."""
        if not self.replicas:
            return 0
        return int(await self.redis.wait(self.replicas, self.wait_ms))

    async def denied(self, jti: str) -> bool:
        return bool(await self.redis.exists(denied(jti)))
