"""Thread events: numbered, kept for replay, and delivered to the owner's sockets everywhere.

Each event gets the next number of its thread (`INCR ws:thread_seq:<thread>`), is appended
to the thread's bounded stream (`ws:thread_events:<thread>`, the last `ws_replay_len` kept,
stream id `<n>-1`) and published on the owner's channel, which every instance's hub
listens to. All of that goes through the `redis` circuit breaker: while Redis is away the
event still reaches the owner's sockets on *this* instance (numbered by a local counter,
marked `degraded`), which is what `delivery` in `/health/ready` reports.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from app.backend import metrics
from app.backend.breaker import BreakerOpen, CircuitBreaker
from app.backend.ws.envelope import envelope
from app.backend.ws.hub import BROADCAST, Hub, user_channel


def stream_key(thread_id: str) -> str:
    return f"ws:thread_events:{thread_id}"


def seq_key(thread_id: str) -> str:
    return f"ws:thread_seq:{thread_id}"


class EventBus:
    def __init__(self, redis: Redis, hub: Hub, breaker: CircuitBreaker, replay_len: int, instance_id: str):
        self.redis, self.hub, self.breaker = redis, hub, breaker
        self.replay_len, self.instance_id = replay_len, instance_id
        self._local_seq = itertools.count(1)

    async def emit(self, owner_id: str, thread_id: str, type_: str, payload: dict[str, Any],
                   run_id: str | None = None) -> dict[str, Any]:
        """Number, keep and deliver one event of a thread; returns the envelope as sent."""
        payload = {**payload, "instance_id": self.instance_id}
        try:
            return await self.breaker.call(lambda: self._publish(owner_id, thread_id, type_, payload, run_id))
        except (BreakerOpen, redis.exceptions.RedisError, OSError):
            event = envelope(type_, {**payload, "degraded": True}, event_id=-next(self._local_seq),
                             run_id=run_id, thread_id=thread_id)
            self.hub.deliver(owner_id, event)
            metrics.events_published.labels(type_, "local").inc()
            return event

    async def _publish(self, owner_id: str, thread_id: str, type_: str, payload: dict[str, Any],
                       run_id: str | None) -> dict[str, Any]:
        event_id = int(await self.redis.incr(seq_key(thread_id)))
        event = envelope(type_, payload, event_id=event_id, run_id=run_id, thread_id=thread_id)
        data = json.dumps(event)
        async with self.redis.pipeline(transaction=False) as p:
            p.xadd(stream_key(thread_id), {"e": data}, id=f"{event_id}-1", maxlen=self.replay_len, approximate=False)
            p.publish(user_channel(owner_id), data)
            await p.execute()
        metrics.events_published.labels(type_, "redis").inc()
        return event

    async def broadcast(self, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
        """An event for every socket on every instance (not kept for replay)."""
        event = envelope(type_, {**payload, "instance_id": self.instance_id})
        await self.breaker.call(lambda: self.redis.publish(BROADCAST, json.dumps(event)))
        return event

    async def replay(self, thread_id: str, after: int) -> tuple[list[dict[str, Any]], int | None]:
        """Events of the thread after `after`, in order, and the oldest event id still kept."""
        key = stream_key(thread_id)
        first = await self.redis.xrange(key, count=1)
        oldest = int(first[0][0].decode().split("-")[0]) if first else None
        rows = await self.redis.xrange(key, min=f"({after}-1")
        return [json.loads(fields[b"e"]) for _, fields in rows], oldest
