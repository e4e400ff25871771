"""The Redis client every platform service uses.

A restarted Redis leaves every pooled connection broken, and answers LOADING while it reads
its append-only file; the first commands would fail. Up to three retries on a connection
error (backoff 50-200 ms, about 0.35 s in all) reconnect and wait that out, so the first
requests after Redis returns succeed; a Redis that is really away still fails within that
(socket timeouts bound each attempt) and the caller answers 503 naming it.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError


# Hundreds of sockets per instance each touch Redis every recheck: a pool that waits for a free
# connection (up to the timeout) instead of failing at the default 100.
MAX_CONNECTIONS = 512


def make_redis(url: str, password: str | None, timeout_s: float) -> Redis:
    pool = BlockingConnectionPool.from_url(url, password=password, socket_timeout=timeout_s,
                                           socket_connect_timeout=timeout_s, max_connections=MAX_CONNECTIONS,
                                           timeout=timeout_s, retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 3),
                                           retry_on_error=[ConnectionError, TimeoutError])
    return Redis(connection_pool=pool)
