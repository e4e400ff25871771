"""The Redis client every platform service uses.

A restarted Redis leaves every pooled connection broken; the first command on each would
fail. One retry on a connection error (after a short backoff) reconnects instead, so the
first requests after Redis returns succeed; a Redis that is really away still fails fast
(socket timeouts bound each attempt) and the caller answers 503 naming it.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError


def make_redis(url: str, password: str | None, timeout_s: float) -> Redis:
    return Redis.from_url(url, password=password, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                          retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
                          retry_on_error=[ConnectionError, TimeoutError])
