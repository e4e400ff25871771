"""redis-py (asyncio) clients of the env's Redis."""

from __future__ import annotations

import redis.asyncio as aioredis

from workbook.env import Env


def client(env: Env, service: str = "redis") -> aioredis.Redis:
    svc = env.service(service)
    return aioredis.Redis.from_url(svc.url, password=svc.secret(), decode_responses=True,
                                   socket_connect_timeout=env.timeouts.connect_s,
                                   socket_timeout=env.timeouts.request_s)
