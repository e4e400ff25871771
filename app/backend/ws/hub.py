"""This instance's open sockets, and the Redis listener that feeds them events published by
any instance (`ws:user:<id>` for a user's sockets, `ws:broadcast` for every socket)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from typing import Any, Protocol

import redis.exceptions
from redis.asyncio import Redis

log = logging.getLogger("app.backend.ws")

USER_CHANNELS = "ws:user:*"
BROADCAST = "ws:broadcast"


def user_channel(user_id: str) -> str:
    return f"ws:user:{user_id}"


class Subscriber(Protocol):
    """A socket as the hub sees it (a `connection.Connection`, which is built on the context that
    holds this hub: hence the protocol, not an import)."""

    id: str
    user_id: str

    def offer(self, event: dict[str, Any]) -> None:
        """Take an event to send if it belongs to a thread the socket follows."""


class Hub:
    def __init__(self, redis: Redis):
        self.redis = redis
        self.conns: dict[str, Subscriber] = {}
        self.by_user: dict[str, set[str]] = defaultdict(set)
        self.listening = False  # whether the Redis subscription is up (cross-instance delivery works)
        self._task: asyncio.Task[None] | None = None

    def add(self, conn: Subscriber) -> None:
        self.conns[conn.id] = conn
        self.by_user[conn.user_id].add(conn.id)

    def remove(self, conn: Subscriber) -> None:
        self.conns.pop(conn.id, None)
        ids = self.by_user.get(conn.user_id)
        if ids is not None:
            ids.discard(conn.id)
            if not ids:
                del self.by_user[conn.user_id]

    def deliver(self, user_id: str | None, event: dict[str, Any]) -> None:
        """Queue `event` on this instance's sockets of `user_id` (None: every socket)."""
        targets = self.conns.values() if user_id is None else [self.conns[c] for c in self.by_user.get(user_id, ())]
        for conn in list(targets):
            conn.offer(event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(USER_CHANNELS)
                await pubsub.subscribe(BROADCAST)
                self.listening, backoff = True, 0.2
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None:
                        continue
                    channel = msg["channel"].decode()
                    try:
                        event = json.loads(msg["data"])
                    except ValueError:
                        log.warning("dropped a message on %s that is not JSON", channel)
                        continue
                    self.deliver(None if channel == BROADCAST else channel.rsplit(":", 1)[1], event)
            except (redis.exceptions.RedisError, OSError) as e:
                if self.listening:
                    log.warning("event subscription lost (%s); retrying", type(e).__name__)
                self.listening = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    await pubsub.aclose()
                except (redis.exceptions.RedisError, OSError):
                    pass
