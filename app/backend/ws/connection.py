"""One client socket: its identity, subscriptions, rate limit, outgoing queue, and the
handlers of the client message types.

Client messages are JSON objects `{"type": ..., ...}`: `ping`, `heartbeat`,
`subscribe_thread`, `unsubscribe_thread`, `start_agent`, `stop_agent`, `user_message`,
`resume`. Anything else (bad JSON, a binary frame, an unknown type, missing fields, another
user's thread) is answered with an `error` envelope carrying a machine-readable `code`, and
the socket stays open. `start_agent` and `user_message` may carry a W3C `traceparent`: the
work they start continues that trace.

A socket receives a thread's events once it subscribed to the thread (`start_agent`,
`subscribe_thread` and `resume` subscribe it). `resume` replays what the client missed and
holds live events of that thread back until the replay is sent, so every event arrives
exactly once and in order.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.backend import metrics, teams
from app.backend.routers.runs import submit
from app.backend.runs import ACTIVE, RunRequest
from app.backend.tokens import Principal
from app.backend.ws.envelope import CLOSE_SLOW_CONSUMER, envelope, error
from app.common import threads, tracing
from app.common.errors import ApiError
from app.common.text import unstorable

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline

    from app.backend.context import Context

OUTGOING_MAX = 2000


def conn_key(conn_id: str) -> str:
    return f"ws:conn:{conn_id}"


def user_conns_key(user_id: str) -> str:
    return f"ws:user_conns:{user_id}"


class Invalid(Exception):
    def __init__(self, code: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.code, self.detail, self.extra = code, detail, extra


class Connection:
    def __init__(self, ws: WebSocket, who: Principal, c: Context):
        self.id = uuid.uuid4().hex
        self.ws, self.who, self.c = ws, who, c
        self.user_id = who.sub
        self.connected_at = time.time()
        self.registered = False  # between register and unregister: only then may keep_alive write the record
        self.threads: set[str] = set()
        self.sent: dict[str, set[int]] = {}  # thread -> event ids sent on this socket (no duplicates)
        self.holding: dict[str, list[dict[str, Any]]] = {}  # thread -> live events held during a replay
        self.outgoing: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTGOING_MAX)
        s = c.settings
        self.rate, self.burst = s.ws_rate_per_s, float(s.ws_rate_burst)
        self.tokens, self.refilled = self.burst, time.monotonic()

    # -- outgoing -------------------------------------------------------------------------------

    def offer(self, event: dict[str, Any]) -> None:
        """An event from the hub: sent if this socket follows its thread, once, in order."""
        thread = event.get("thread_id")
        if event.get("type") == "thread_access_revoked":
            # Removed from a team: the thread is dropped here and now, so nothing more of it arrives.
            if thread in self.threads:
                self.threads.discard(thread)
                self.holding.pop(thread, None)
                self.send(event)
            return
        if thread is not None and thread not in self.threads:
            return
        if thread is not None and thread in self.holding:
            self.holding[thread].append(event)
            return
        self._queue_event(event)

    def _queue_event(self, event: dict[str, Any]) -> None:
        thread, eid = event.get("thread_id"), event.get("event_id")
        if thread is not None and isinstance(eid, int) and eid > 0:
            sent = self.sent.setdefault(thread, set())
            if eid in sent:
                return
            sent.add(eid)
            if len(sent) > 4 * OUTGOING_MAX:  # bounded: forget the oldest half
                for old in sorted(sent)[: len(sent) // 2]:
                    sent.discard(old)
        self.send(event)

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.outgoing.put_nowait(message)
        except asyncio.QueueFull:
            # A client this far behind would make the instance hold unbounded memory for it.
            self.outgoing = asyncio.Queue(1)
            self.outgoing.put_nowait(None)

    async def writer(self) -> None:
        while True:
            message = await self.outgoing.get()
            if message is None:
                await self.ws.close(CLOSE_SLOW_CONSUMER, "client too slow to read its events")
                return
            await self.ws.send_text(json.dumps(message))
            metrics.ws_sent.labels(message["type"]).inc()
            if message.get("event_id") is not None:
                metrics.ws_delivery_seconds.observe(max(0.0, time.time() - _epoch(message["timestamp"])))

    # -- server-side state ----------------------------------------------------------------------

    @property
    def ttl_ms(self) -> int:
        """How long the Redis record outlives an instance that died without closing the socket."""
        return max(1, round(self.c.settings.ws_state_ttl_s * 1000))

    async def register(self, limit: int) -> bool:
        """Record the connection; False (and nothing recorded) if the user is at `limit` already.
        Add-then-count in one transaction, so simultaneous handshakes on two instances cannot
        both slip under the limit. Members whose record expired (their instance died without
        closing them) are dropped first, so a crash does not lock the user out."""
        key = user_conns_key(self.user_id)
        members = [m.decode() for m in await self.c.redis.smembers(key)]
        if members:
            async with self.c.redis.pipeline(transaction=False) as p:
                for m in members:
                    p.exists(conn_key(m))
                alive = await p.execute()
            if dead := [m for m, up in zip(members, alive) if not up]:
                await self.c.redis.srem(key, *dead)
        async with self.c.redis.pipeline(transaction=True) as p:
            self._write_record(p)
            p.scard(key)
            *_, count = await p.execute()
        self.registered = True
        if count > limit:
            await self.unregister()
            return False
        return True

    def _write_record(self, p: Pipeline) -> None:
        """The record and the set member, written together so no member is ever without its record."""
        p.hset(conn_key(self.id), mapping={"user_id": self.user_id, "instance_id": self.c.settings.instance_id,
                                          "connected_at": self.connected_at, "threads": json.dumps(sorted(self.threads))})
        p.pexpire(conn_key(self.id), self.ttl_ms)
        p.sadd(user_conns_key(self.user_id), self.id)
        p.pexpire(user_conns_key(self.user_id), self.ttl_ms)

    async def keep_alive(self) -> None:
        """Refresh the record's TTL while the socket is open, every third of it: a refresh that
        fails (Redis away a moment) leaves two more chances before the record lapses, and a record
        that lapsed anyway (Redis away longer than the TTL) is written again, so the open socket
        counts toward its user's limit once Redis is back."""
        while True:
            await asyncio.sleep(self.c.settings.ws_state_ttl_s / 3)
            try:
                async with self.c.redis.pipeline(transaction=True) as p:
                    p.pexpire(conn_key(self.id), self.ttl_ms)
                    p.sismember(user_conns_key(self.user_id), self.id)
                    p.pexpire(user_conns_key(self.user_id), self.ttl_ms)
                    kept, member, _ = await p.execute()
                if not (kept and member) and self.registered:
                    async with self.c.redis.pipeline(transaction=True) as p:
                        self._write_record(p)
                        await p.execute()
            except (RedisError, OSError):
                pass  # Redis is away: the socket stays open; the next tick tries again

    async def save_threads(self) -> None:
        async with self.c.redis.pipeline(transaction=True) as p:
            p.hset(conn_key(self.id), "threads", json.dumps(sorted(self.threads)))
            p.pexpire(conn_key(self.id), self.ttl_ms)
            await p.execute()

    async def unregister(self) -> None:
        self.registered = False
        async with self.c.redis.pipeline(transaction=True) as p:
            p.delete(conn_key(self.id))
            p.srem(user_conns_key(self.user_id), self.id)
            await p.execute()

    # -- incoming -------------------------------------------------------------------------------

    def _admit(self) -> float:
        """0 if a message may be handled now, else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    async def serve(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            wait = self._admit()
            if wait:
                self._error("rate_limited", "too many messages", retry_after=round(wait, 3))
                continue
            if message.get("bytes") is not None:
                metrics.ws_message_bytes.observe(len(message["bytes"]))
                self._error("binary_not_supported", "send JSON text frames")
                continue
            text = message.get("text") or ""
            metrics.ws_message_bytes.observe(len(text.encode()))
            try:
                data = json.loads(text)
            except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
                self._error("invalid_json", "the message is not valid JSON")
                continue
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                self._error("invalid_message", "a message is a JSON object with a string `type`")
                continue
            kind = data["type"]
            handler = HANDLERS.get(kind)
            metrics.ws_received.labels(kind if handler else "unknown").inc()
            if handler is None:
                self._error("unknown_type", f"unknown message type {kind[:64]!r}", type=kind[:64])
                continue
            try:
                if kind in TRACED:
                    with tracing.message_span(f"ws {kind}", data.get("traceparent")):
                        await handler(self, data)
                else:
                    await handler(self, data)
            except Invalid as e:
                self._error(e.code, e.detail, type=kind, **e.extra)
            except (RedisError, OSError) as e:  # the socket outlives a dependency's outage
                self._error("dependency_unavailable", f"redis is unavailable ({type(e).__name__})", type=kind)
            except SQLAlchemyError as e:
                self._error("dependency_unavailable", f"postgres is unavailable ({type(e).__name__})", type=kind)

    def _error(self, code: str, detail: str, **extra: Any) -> None:
        metrics.ws_errors.labels(code).inc()
        self.send(error(code, detail, **extra))

    async def _owned_thread(self, data: dict[str, Any]) -> str:
        tid = _uuid(data, "thread_id")
        async with self.c.db.connect() as conn:
            if await threads.owned(conn, self.user_id, tid) is None:
                raise Invalid("thread_not_found", "no such thread")  # another user's: the same answer
        return str(tid)

    async def _readable_thread(self, data: dict[str, Any]) -> str:
        """The user's own thread, or one of a team they belong to (followed, not written to)."""
        tid = _uuid(data, "thread_id")
        async with self.c.db.connect() as conn:
            if not await teams.can_read_thread(conn, self.user_id, tid):
                raise Invalid("thread_not_found", "no such thread")
        return str(tid)

    async def follow(self, thread: str) -> None:
        if thread not in self.threads:
            self.threads.add(thread)
            await self.save_threads()


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _uuid(data: dict[str, Any], field: str) -> uuid.UUID:
    value = data.get(field)
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Invalid("invalid_message", f"`{field}` must be a UUID") from None


def _str(data: dict[str, Any], field: str, max_len: int, required: bool = False) -> str | None:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise Invalid("invalid_message", f"`{field}` must be a string of 1 to {max_len} characters")
    if reason := unstorable(value):
        raise Invalid("invalid_message", f"`{field}` {reason}")
    return value


# -- handlers -----------------------------------------------------------------------------------

async def on_ping(conn: Connection, data: dict[str, Any]) -> None:
    conn.send(envelope("pong", {"echo": data.get("payload")}))


async def on_heartbeat(conn: Connection, data: dict[str, Any]) -> None:
    conn.send(envelope("heartbeat_ack", {"client_time": data.get("client_time"), "server_time": time.time()}))


async def on_subscribe(conn: Connection, data: dict[str, Any]) -> None:
    thread = await conn._readable_thread(data)
    await conn.follow(thread)
    conn.send(envelope("subscribed", {"threads": sorted(conn.threads)}, thread_id=thread))


async def on_unsubscribe(conn: Connection, data: dict[str, Any]) -> None:
    thread = str(_uuid(data, "thread_id"))
    if thread in conn.threads:
        conn.threads.discard(thread)
        await conn.save_threads()
    conn.send(envelope("unsubscribed", {"threads": sorted(conn.threads)}, thread_id=thread))


async def on_start_agent(conn: Connection, data: dict[str, Any]) -> None:
    if "runs:create" not in conn.who.permissions:
        raise Invalid("forbidden", "requires permission 'runs:create'")
    thread = await conn._owned_thread(data)
    fields = {k: v for k, v in data.items() if k in RunRequest.model_fields}
    try:
        req = RunRequest.model_validate(fields, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        raise Invalid("invalid_message", f"`{'.'.join(str(p) for p in err['loc'])}`: {err['msg']}") from None

    async def accepted(run: dict[str, Any]) -> None:
        await conn.follow(thread)
        conn.send(envelope("run_accepted", {"run": run}, run_id=run["id"], thread_id=thread))

    try:
        await submit(conn.c, conn.who, uuid.UUID(thread), req, accepted)
    except ApiError as e:
        raise Invalid(e.error, e.detail, **e.extra) from None


async def on_stop_agent(conn: Connection, data: dict[str, Any]) -> None:
    run = await conn.c.runner.owned(conn.user_id, _uuid(data, "run_id"))
    if run is None:
        raise Invalid("run_not_found", "no such run")
    if run["status"] in ACTIVE:
        await conn.c.runner.request_stop(run["id"])
    conn.send(envelope("stop_requested", {"status": run["status"]}, run_id=run["id"], thread_id=run["thread_id"]))


async def on_user_message(conn: Connection, data: dict[str, Any]) -> None:
    thread = await conn._owned_thread(data)
    content = _str(data, "content", 32_000, required=True)
    async with conn.c.db.begin() as db:
        saved = await threads.add_message(db, conn.user_id, uuid.UUID(thread), "user", content or "")
    conn.send(envelope("message_saved", {"message": saved}, thread_id=thread))
    await conn.c.bus.emit(conn.user_id, thread, "message_created", {"message": saved})


async def on_resume(conn: Connection, data: dict[str, Any]) -> None:
    thread = await conn._readable_thread(data)
    last = data.get("last_event_id")
    if not isinstance(last, int) or last < 0:
        raise Invalid("invalid_message", "`last_event_id` must be a non-negative integer")
    conn.holding[thread] = []
    try:
        await conn.follow(thread)
        events, oldest = await conn.c.bus.replay(thread, last)
        if oldest is not None and last < oldest - 1:
            conn.send(envelope("resync_required", {"last_event_id": last, "oldest_event_id": oldest},
                               thread_id=thread))
            return
        # The client says what it has: everything after `last` is sent again, once.
        conn.sent[thread] = {e for e in conn.sent.get(thread, set()) if e <= last}
        for event in events:
            conn._queue_event(event)
        newest = max([last, *(e["event_id"] for e in events)])
        conn.send(envelope("resume_complete", {"replayed": len(events), "last_event_id": newest},
                           thread_id=thread))
    finally:
        for event in conn.holding.pop(thread, []):
            conn._queue_event(event)


# Messages that start work get a server span (the /ws route is not traced as a whole), continuing
# the W3C `traceparent` the message carries: a run started over a socket is one trace with the
# client's, its events carry that trace id.
TRACED = ("start_agent", "user_message")
HANDLERS = {"ping": on_ping, "heartbeat": on_heartbeat, "subscribe_thread": on_subscribe,
            "unsubscribe_thread": on_unsubscribe, "start_agent": on_start_agent, "stop_agent": on_stop_agent,
            "user_message": on_user_message, "resume": on_resume}
