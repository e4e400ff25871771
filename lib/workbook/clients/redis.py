"""redis-py (asyncio) clients of the env's Redis."""

from __future__ import annotations

import redis.asyncio as aioredis

from workbook.checks import using_now
from workbook.clients.scope import Check
from workbook.params import Env


def client(env: Env, service: str = "redis") -> aioredis.Redis:
    svc = env.service(service)
    using_now(service)
    return aioredis.Redis.from_url(svc.url, password=svc.secret(), decode_responses=True,
                                   socket_connect_timeout=env.timeouts.connect_s,
                                   socket_timeout=env.timeouts.request_s)


def for_check(env: Env, ck: Check, service: str = "redis") -> aioredis.Redis:
    """A client closed when the check `ck` ends."""
    r = client(env, service)
    ck.defer(r.aclose)
    return r
