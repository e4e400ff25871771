"""redis-py (asyncio) clients of the env's Redis.

Where params give the env's Redis Sentinels (`services.redis.sentinel`), `client` asks them for
the primary, as the platform does, so it follows a failover; `server` talks to one data server
as it is (a replica too), `sentinels` to the Sentinels themselves.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from workbook.checks import using_now
from workbook.clients.scope import Check
from workbook.params import Env


def sentinels(env: Env, service: str = "redis") -> Sentinel | None:
    """The Sentinels watching `service`, or None where params give it a plain URL."""
    svc = env.service(service)
    if svc.sentinel is None:
        return None
    hosts = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in svc.sentinel.hosts]
    return Sentinel(hosts, sentinel_kwargs={"password": svc.sentinel.secret(), "decode_responses": True,
                                            "socket_timeout": env.timeouts.connect_s,
                                            "socket_connect_timeout": env.timeouts.connect_s},
                    password=svc.secret(), decode_responses=True, socket_connect_timeout=env.timeouts.connect_s,
                    socket_timeout=env.timeouts.request_s)


def client(env: Env, service: str = "redis") -> aioredis.Redis:
    svc = env.service(service)
    using_now(service)
    if (watched := sentinels(env, service)) is not None:
        return watched.master_for(svc.sentinel.master_name)  # type: ignore[union-attr]
    return aioredis.Redis.from_url(svc.url, password=svc.secret(), decode_responses=True,
                                   socket_connect_timeout=env.timeouts.connect_s,
                                   socket_timeout=env.timeouts.request_s)


def for_check(env: Env, ck: Check, service: str = "redis") -> aioredis.Redis:
    """A client closed when the check `ck` ends."""
    r = client(env, service)
    ck.defer(r.aclose)
    return r


def server(env: Env, ck: Check, name: str) -> aioredis.Redis:
    """One data server of the stack (`redis`, `redis_replica`) as it is now, whatever its role;
    closed with `ck`. The replica answers to the primary's password."""
    svc = env.service(name)
    using_now("redis")
    r = aioredis.Redis.from_url(svc.url, password=svc.secret() or env.service("redis").secret(),
                                decode_responses=True, socket_connect_timeout=env.timeouts.connect_s,
                                socket_timeout=env.timeouts.request_s)
    ck.defer(r.aclose)
    return r
