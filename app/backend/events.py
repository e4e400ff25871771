"""Thread events: numbered, kept for replay, and delivered to the owner's sockets everywhere.

Each event gets the next number of its thread (`INCR ws:thread_seq:<thread>`), is kept for
replay in the thread's sorted set (`ws:thread_replay:<thread>`, scored by its number, the last
`ws_replay_len` kept) and published on the owner's channel, which every instance's hub
listens to, under a short per-thread Redis lock so two instances producing events of one
thread publish them in the same order. The replay set does not depend on that lock: an event
numbered before another but kept after it (the lock not won in time, two instances feeding
one thread under load) still takes its place, where an append-only stream had to refuse it. All of that goes through the
`redis` circuit breaker: while Redis is away the event still reaches the owner's sockets on
*this* instance (numbered by a local counter, marked `degraded`), which is what `events` in
`/health/ready` reports.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from app.backend import metrics
from app.common import tracing
from app.backend.ws.envelope import envelope
from app.backend.ws.hub import BROADCAST, Hub, user_channel
from app.common.breaker import BreakerOpen, CircuitBreaker


log = logging.getLogger("app.backend.events")


LOCK_TTL_S = 5.0
LOCK_WAIT_S = 2.0


def lock_key(thread_id: str) -> str:
    return f"ws:thread_lock:{thread_id}"


def replay_key(thread_id: str) -> str:
    return f"ws:thread_replay:{thread_id}"


def audience_key(thread_id: str) -> str:
    """Who besides the owner hears a (team) thread; written by app.backend.teams."""
    return f"team:audience:{thread_id}"


def seq_key(thread_id: str) -> str:
    return f"ws:thread_seq:{thread_id}"


class EventBus:
    def __init__(self, redis: Redis, hub: Hub, breaker: CircuitBreaker, replay_len: int, instance_id: str):
        self.redis, self.hub, self.breaker = redis, hub, breaker
        self.replay_len, self.instance_id = replay_len, instance_id
        self._local_seq = itertools.count(1)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def emit(self, owner_id: str, thread_id: str, type_: str, payload: dict[str, Any],
                   run_id: str | None = None,
                   persist: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> dict[str, Any]:
        """Number, keep and deliver one event of a thread; returns the envelope as sent.

        `persist` runs with the numbered event before anyone can receive it, so a client that
        sees an event and asks the API finds what the event announced already stored.
        """
        # The trace the event belongs to (the request, or the run it started): a client's event and
        # the platform's spans can be joined on it.
        payload = {**payload, "instance_id": self.instance_id, **tracing.current_ids()}
        # One event of a thread at a time: here (an asyncio lock) and across instances (a short
        # Redis lock), so numbering, keeping and publishing happen in the same order everywhere.
        async with self._locks[thread_id]:
            lock = self.redis.lock(lock_key(thread_id), timeout=LOCK_TTL_S, blocking_timeout=LOCK_WAIT_S,
                                   sleep=0.002)
            try:
                held = bool(await self.breaker.call(lock.acquire))
            except (BreakerOpen, redis.exceptions.RedisError, OSError):
                held = False
            if not held:
                log.warning("thread %s: publishing without the thread lock", thread_id)
            try:
                return await self._emit(owner_id, thread_id, type_, payload, run_id, persist)
            finally:
                if held:
                    try:
                        await lock.release()
                    except (redis.exceptions.RedisError, OSError):
                        pass  # it expires after LOCK_TTL_S

    async def _emit(self, owner_id: str, thread_id: str, type_: str, payload: dict[str, Any], run_id: str | None,
                    persist: Callable[[dict[str, Any]], Awaitable[None]] | None) -> dict[str, Any]:
        try:
            event_id = int(await self.breaker.call(lambda: self.redis.incr(seq_key(thread_id))))
        except (BreakerOpen, redis.exceptions.RedisError, OSError):
            event_id = 0
        if not event_id:
            event = envelope(type_, {**payload, "degraded": True}, event_id=-next(self._local_seq),
                             run_id=run_id, thread_id=thread_id)
        else:
            event = envelope(type_, payload, event_id=event_id, run_id=run_id, thread_id=thread_id)
        if persist is not None:
            await persist(event)
        if event_id:
            try:
                await self.breaker.call(lambda: self._publish(owner_id, thread_id, event))
                metrics.events_published.labels(type_, "redis").inc()
                return event
            except (BreakerOpen, redis.exceptions.RedisError, OSError):
                event["payload"]["degraded"] = True
        self.hub.deliver(owner_id, event)
        metrics.events_published.labels(type_, "local").inc()
        return event

    async def _publish(self, owner_id: str, thread_id: str, event: dict[str, Any]) -> None:
        data = json.dumps(event)
        key = replay_key(thread_id)
        # A team thread's events go to every member (app.backend.teams keeps the set), the owner included.
        audience = {m.decode() if isinstance(m, bytes) else m for m in await self.redis.smembers(audience_key(thread_id))}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {data: event["event_id"]})
            pipe.zremrangebyrank(key, 0, -self.replay_len - 1)
            for user in sorted(audience | {owner_id}):
                pipe.publish(user_channel(user), data)
            await pipe.execute()

    async def broadcast(self, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
        """An event for every socket on every instance (not kept for replay)."""
        event = envelope(type_, {**payload, "instance_id": self.instance_id})
        await self.breaker.call(lambda: self.redis.publish(BROADCAST, json.dumps(event)))
        return event

    async def forget(self, thread_id: str) -> None:
        """A deleted thread's numbering and replay: nothing is left to resume."""
        await self.redis.delete(replay_key(thread_id), seq_key(thread_id))

    async def replay(self, thread_id: str, after: int) -> tuple[list[dict[str, Any]], int | None]:
        """Events of the thread after `after`, in order, and the oldest event id still kept."""
        key = replay_key(thread_id)
        first = await self.redis.zrange(key, 0, 0, withscores=True)
        oldest = int(first[0][1]) if first else None
        rows = await self.redis.zrangebyscore(key, f"({after}", "+inf")
        return [json.loads(row) for row in rows], oldest
