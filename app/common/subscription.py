"""A Redis pub/sub subscription kept for a process's life: made again whenever Redis goes away
(backoff 0.2 s doubling to `retry_max_s`), with `listening` saying whether it is up now. The gateway's event
hub and the backend's signing-key listener are two of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

log = logging.getLogger("app.subscription")


class Subscription:
    def __init__(self, redis: Redis, what: str, on_message: Callable[[str, bytes], None], *,
                 channels: Sequence[str] = (), patterns: Sequence[str] = (),
                 on_subscribed: Callable[[], Any] | None = None, retry_max_s: float = 2.0):
        """`on_message(channel, data)` for each message; `on_subscribed()` each time the
        subscription is (re)made, for what was missed while it was down."""
        self.redis, self.what, self.on_message = redis, what, on_message
        self.retry_max_s = retry_max_s
        self.channels, self.patterns, self.on_subscribed = channels, patterns, on_subscribed
        self.listening = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self) -> None:
        first = min(0.2, self.retry_max_s)
        backoff = first
        while True:
            pubsub = self.redis.pubsub()
            try:
                if self.patterns:
                    await pubsub.psubscribe(*self.patterns)
                if self.channels:
                    await pubsub.subscribe(*self.channels)
                if self.on_subscribed is not None:
                    self.on_subscribed()
                self.listening, backoff = True, first
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        self.on_message(msg["channel"].decode(), msg["data"])
            except (redis.exceptions.RedisError, OSError) as e:
                if self.listening:
                    log.warning("%s subscription lost (%s); retrying", self.what, type(e).__name__)
                self.listening = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
            finally:
                try:
                    await pubsub.aclose()
                except (redis.exceptions.RedisError, OSError):
                    pass
