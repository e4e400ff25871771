"""The backend's side of a signing-key change: auth announces each rotation and retirement on
Redis pub/sub (`auth_keys.SIGNING_KEYS_CHANNEL`), and every instance drops its cached JWKS when it
hears one, so a retired key stops opening the API on all instances at once, not after
`jwks_ttl_s`. A message lost while Redis is away is covered twice: the cache is dropped again
each time the subscription is (re)made, and the TTL still bounds how long a missed change lasts.
"""

from __future__ import annotations

import json
import logging

from redis.asyncio import Redis

from app.backend.auth_client import AuthClient
from app.common.auth_keys import SIGNING_KEYS_CHANNEL
from app.common.subscription import Subscription

log = logging.getLogger("app.backend.keys")


def key_changes(redis: Redis, auth: AuthClient, retry_max_s: float) -> Subscription:
    """The subscription to auth's key changes, dropping `auth`'s JWKS cache on each (start it)."""
    def heard(_: str, data: bytes) -> None:
        try:
            change = json.loads(data)
            kid = change["kid"] if change.get("change") == "retired" else None
        except (ValueError, TypeError, KeyError):
            log.warning("dropped a signing-key notice that is not {change, kid}")
            return
        auth.forget_jwks(retired=kid)
        log.info("signing keys changed (%s %s): JWKS cache dropped", change.get("change"), change.get("kid"))

    # Changes made while not subscribed were not heard: refetch before trusting the cache.
    return Subscription(redis, "signing-key", heard, channels=(SIGNING_KEYS_CHANNEL,), on_subscribed=auth.forget_jwks,
                        retry_max_s=retry_max_s)
