"""The Redis client every platform service uses, direct or through Sentinel.

With Sentinels configured (`*_REDIS_SENTINELS`), redis-py's Sentinel support asks them where
the primary is before each new connection, and a connection that meets a demoted primary
(READONLY) or a dead one is dropped: after a failover the next attempt reaches the promoted
replica by itself. Without them, `*_REDIS_URL` is the one server.

A restarted or failing-over Redis leaves pooled connections broken (or answers LOADING while it
reads its append-only file); retries on a connection error (by default three, backing off 100 ms,
200 ms, 200 ms: half a second in all; `redis_retries`, `redis_backoff_*_s`) reconnect and wait that
out. A Redis that is really away still fails within that (socket timeouts bound each attempt) and
the caller answers 503 naming it: a write during a switch fails fast, it never hangs. Each
connection carries the service's name (CLIENT LIST shows whose it is), and the pool is bounded: a
command that finds no connection free waits at most the pool timeout, then fails.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

from app.common.settings import AuthSettings, BackendSettings


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool that waits for a free connection (up to its timeout) instead of failing at once."""


def _address(host: str) -> tuple[str, int]:
    name, port = host.rsplit(":", 1)
    return name, int(port)


def make_redis(url: str, password: str | None, timeout_s: float, *, name: str, sentinels: list[str] | None = None,
               master_name: str = "", sentinel_password: str | None = None, pool_max: int = 512,
               pool_timeout_s: float = 3.0, retries: int = 3, backoff_base_s: float = 0.05,
               backoff_cap_s: float = 0.2) -> Redis:
    common: dict[str, Any] = dict(
        password=password, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, client_name=name,
        retry=Retry(ExponentialBackoff(cap=backoff_cap_s, base=backoff_base_s), retries),
        retry_on_error=[ConnectionError, TimeoutError, ReadOnlyError])
    if sentinels:
        sentinel = Sentinel([_address(h) for h in sentinels], socket_timeout=timeout_s,
                            sentinel_kwargs={"password": sentinel_password, "socket_timeout": timeout_s,
                                             "socket_connect_timeout": timeout_s})
        return sentinel.master_for(master_name, connection_pool_class=BlockingSentinelPool,
                                   max_connections=pool_max, timeout=pool_timeout_s, **common)
    pool = BlockingConnectionPool.from_url(url, max_connections=pool_max, timeout=pool_timeout_s, **common)
    return Redis(connection_pool=pool)


def service_redis(settings: AuthSettings | BackendSettings, name: str) -> Redis:
    """The Redis client a service's settings describe, its connections named `name`."""
    return make_redis(settings.redis_url, settings.secret("redis_password"), settings.dependency_timeout_s,
                      name=name, sentinels=settings.redis_sentinels, master_name=settings.redis_master_name,
                      sentinel_password=settings.secret("redis_sentinel_password"),
                      pool_max=settings.redis_pool_max, pool_timeout_s=settings.redis_pool_timeout_s,
                      retries=settings.redis_retries, backoff_base_s=settings.redis_backoff_base_s,
                      backoff_cap_s=settings.redis_backoff_cap_s)


def _alive(c: Any) -> bool:
    # A server that restarted or dropped its clients closed these sockets; an idle connection
    # learns it only when next used, but its reader has already seen the EOF.
    return bool(c.is_connected and not c._reader.at_eof())


def pool_stats(redis: Redis) -> dict[str, int]:
    """The pool's connections now: open (sockets the server still holds, idle or in use), in use,
    and the most it may hold. Idle connections a restart closed, or a failover disconnected, stay
    in the pool until next used (they reconnect then): those are not open."""
    pool = redis.connection_pool
    conns = [*pool._available_connections, *pool._in_use_connections]
    return {"open": sum(1 for c in conns if _alive(c)), "in_use": len(pool._in_use_connections),
            "max": pool.max_connections}
