"""Auth's side of a signing-key change: announce it on Redis pub/sub, so every backend drops its
cached JWKS at once (app.backend.key_changes) instead of trusting a retired key until its cache
expires. The key directory is the truth; an announcement Redis could not take is logged and the
backends see the change within their JWKS TTL."""

from __future__ import annotations

import json
import logging
from typing import Literal

import redis.exceptions
from redis.asyncio import Redis

from app.common.auth_keys import SIGNING_KEYS_CHANNEL
from app.common.redis_client import service_redis
from app.common.settings import AuthSettings

log = logging.getLogger("app.auth.keys")


async def announce(redis: Redis, change: Literal["rotated", "retired"], kid: str) -> bool:
    """Publish the change; False if Redis could not be told."""
    try:
        await redis.publish(SIGNING_KEYS_CHANNEL, json.dumps({"change": change, "kid": kid}))
        return True
    except (redis.exceptions.RedisError, OSError) as e:
        log.warning("signing key %s %s, not announced (%s): backends see it within their JWKS TTL",
                    kid, change, type(e).__name__)
        return False


async def announce_once(settings: AuthSettings, change: Literal["rotated", "retired"], kid: str) -> bool:
    """`announce` from a process without a Redis client of its own (the CLI)."""
    r = service_redis(settings, "auth-cli")
    try:
        return await announce(r, change, kid)
    finally:
        await r.aclose()
