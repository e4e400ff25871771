"""This instance's open sockets, and the Redis listener that feeds them events published by
any instance (`ws:user:<id>` for a user's sockets, `ws:broadcast` for every socket)."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any, Protocol

from redis.asyncio import Redis

from app.common.subscription import Subscription

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
    def __init__(self, redis: Redis, retry_max_s: float):
        self.redis = redis
        self.conns: dict[str, Subscriber] = {}
        self.by_user: dict[str, set[str]] = defaultdict(set)
        self.subscription = Subscription(redis, "event", self._heard, channels=(BROADCAST,), patterns=(USER_CHANNELS,),
                                         retry_max_s=retry_max_s)

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

    @property
    def listening(self) -> bool:
        """Whether the Redis subscription is up (cross-instance delivery works)."""
        return self.subscription.listening

    def start(self) -> None:
        self.subscription.start()

    async def stop(self) -> None:
        await self.subscription.stop()

    def _heard(self, channel: str, data: bytes) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            log.warning("dropped a message on %s that is not JSON", channel)
            return
        self.deliver(None if channel == BROADCAST else channel.rsplit(":", 1)[1], event)
