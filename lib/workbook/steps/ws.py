"""Steps of 02_websocket: the backend's WebSocket gateway as its clients see it.

Arrange (a user with a thread, sockets that follow it, many users running at once, a fleet of
sockets), act (start the scripted `probe` run over a socket, flood a socket, broadcast) and read
(a run's or a thread's numbered events, the Redis record a connection leaves, what `/metrics`
moved). Clients come in as arguments; every wait is `workbook.poll` or a socket read with a
deadline, so a wait that runs out fails naming what it waited for.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
import plotly.graph_objects as go
from IPython.display import display
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.frames import Frame, Opcode

from workbook import faults
from workbook.checks import skip
from workbook.clients.platform import AsyncAuth, AsyncBackend, PlatformError, User, auth as auth_client, metric, redact
from workbook.clients.platform.ws import Socket
from workbook.clients.scope import Check
from workbook.concurrency import gather_bounded
from workbook.context import Workbook
from workbook.params import Env, Load
from workbook.polling import poll
from workbook.stats import LatencyStats

Message = dict[str, Any]

ENVELOPE_KEYS = frozenset({"type", "event_id", "run_id", "thread_id", "timestamp", "payload"})
# The events that end a run: a client waiting for one of them knows the run is over.
RUN_END = ("final_report", "agent_error", "agent_stopped")
# The five events every run streams before its result (a failing tool ends after the fourth).
CRITICAL_EVENTS = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
# The run status REST must show once a client holds the run's last event.
TERMINAL_STATUS = {"final_report": "completed", "agent_error": "failed", "agent_stopped": "cancelled"}
# The scripted test agent the gateway checks start: its events have controllable timing and no model.
PROBE = "probe"
# How long a check listens for what must not come (a duplicate, a leak, an event after a run's
# end, a reply to a refused request): each of them would arrive within milliseconds of what
# it follows, through the same instance and Redis subscription.
QUIET_S = 0.3
ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)")
CALL_ID = re.compile(r"call_[0-9a-f]{12}")
# Text a client may send: many scripts, emoji sequences, combining marks, zero-width and line
# separators, control characters, quotes, backslashes and markup.
UNICODE_TEXT = ("Grüße Привет こんにちは 你好 مرحبا שלום नमस्ते 🧪🚀 👩‍👩‍👧‍👦 🇺🇦 e\u0301 \u200b\u200d "
                "\u2028\u2029 \x01\x7f \"quotes\" \\back\\slash </script> \t\n\r end")


# -- reading what arrived ------------------------------------------------------------------------

def message_types(messages: Sequence[Message]) -> list[str]:
    """The types of `messages` in order: what a failed assert shows of a socket's traffic."""
    return [m["type"] for m in messages]


def without_notices(messages: Sequence[Message]) -> list[Message]:
    """What arrived minus admin broadcasts: `system_notice` goes to every socket by design, so
    another notebook's broadcast may land on any socket of this one."""
    return [m for m in messages if m["type"] != "system_notice"]


def event_ids(messages: Sequence[Message]) -> list[int]:
    """The event ids among `messages`, in arrival order (acks and errors carry none)."""
    return [m["event_id"] for m in messages if m["event_id"] is not None]


def thread_events(messages: Sequence[Message], thread_id: str) -> list[Message]:
    """The numbered events of `thread_id` among `messages`, in arrival order (acks, errors and
    other checks' broadcast notices carry no event id and are left out)."""
    return [m for m in messages if m.get("thread_id") == thread_id and isinstance(m.get("event_id"), int)]


def messages_of_others(messages: Sequence[Message], user: User, thread_id: str, run_ids: set[str]) -> list[Message]:
    """Messages naming a run, a thread or (in a run's context) a user other than these: what a
    socket of `user` must never receive."""
    return [m for m in messages if m["run_id"] not in (None, *run_ids) or m["thread_id"] not in (None, thread_id)
            or m["payload"].get("context", {}).get("user_id", user.id) != user.id]


def locally_numbered(messages: Sequence[Message], run_id: str) -> list[Message]:
    """The run's events numbered by the instance's local counter (negative ids): what it delivers
    to its own sockets while Redis, and so the thread's counter, is away."""
    return [m for m in messages if m["run_id"] == run_id and (m["event_id"] or 0) < 0]


def probe_event_types(thinking: int = 1) -> list[str]:
    """The events of a completed `probe` run, in order: it thinks once, or (scenario `long`) once per step."""
    return ["agent_started", *["agent_thinking"] * thinking, "tool_executing", "tool_completed",
            "agent_completed", "final_report"]


def iso_epoch(iso: str) -> float:
    """An envelope's ISO-8601 UTC `timestamp` as epoch seconds, to compare with clocks and REST times."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def token_exp(token: str) -> int:
    """The `exp` claim of a token (read, not verified: the gateway is what verifies)."""
    return int(jwt.decode(token, options={"verify_signature": False})["exp"])


# -- arranging -----------------------------------------------------------------------------------

async def startable_agents(backend: AsyncBackend) -> frozenset[str]:
    """The agents a run can be started with, as the backend reports them (`/health/agents`).
    Read once per notebook: `probe` is a test agent, which a staging may not enable."""
    return frozenset(a["name"] for a in (await backend.agents())["agents"] if a["entry"])


def require_agent(agents: frozenset[str], name: str = PROBE) -> None:
    """Skip the running check unless the backend starts runs of `name`: a backend without test
    agents refuses the run (422 `unknown_agent`), which says nothing about the gateway."""
    if name not in agents:
        skip(f"the backend offers no '{name}' agent (test agents are off here); it starts: {', '.join(sorted(agents))}")


async def user_with_thread(auth: AsyncAuth, backend: AsyncBackend, ck: Check) -> tuple[User, dict[str, Any]]:
    """A logged-in user and a thread of theirs made through `backend`, both removed with the check."""
    user = await auth.new_user(ck)
    return user, await backend.new_thread(ck, user)


async def user_with_sockets_on_both(ck: Check, auth: AsyncAuth, home: AsyncBackend,
                                    backends: tuple[AsyncBackend, AsyncBackend]
                                    ) -> tuple[User, dict[str, Any], Socket, Socket]:
    """A user with a thread made on `home`, a socket on each instance, the second following the
    thread: a run started on the first reaches both, one directly and one through Redis."""
    user, thread = await user_with_thread(auth, home, ck)
    a, b = await backends[0].socket(ck, user), await backends[1].socket(ck, user)
    await follow_thread(b, thread["id"])
    return user, thread, a, b


async def handshake_or_status(ck: Check, backend: AsyncBackend, user: User) -> Socket | int:
    """An open socket, or the HTTP status that refused the handshake (handshakes that race)."""
    try:
        return await backend.socket(ck, user)
    except InvalidStatus as e:
        return e.response.status_code


async def connect_first_accepting(ck: Check, user: User, backends: Sequence[AsyncBackend]
                                  ) -> tuple[AsyncBackend, Socket]:
    """A client's failover: the first instance that accepts the handshake, and its socket."""
    for backend in backends:
        try:
            return backend, await backend.socket(ck, user)
        except (OSError, InvalidMessage):   # refused, or closed before answering: that instance is down
            continue
    raise AssertionError("no instance accepted the handshake")


async def expiring_token_auth(wb: Workbook, auth: AsyncAuth) -> AsyncAuth:
    """A client of a second auth process (the same keys, database and Redis) whose access tokens live
    `expect.ws.expiring_token_ttl_s`: the stack's own auth issues tokens too long-lived to watch
    expire. Started by the first check that needs it, it serves every expiry check of the notebook
    and stops at its end (`wb.shared`): a start costs seconds, a token a few milliseconds."""
    async def start(scope: Check) -> AsyncAuth:
        issuer = (await auth.config())["issuer"]
        inst = await faults.started_instance(wb.env, "auth", {
            "AUTH_ISSUER": issuer, "AUTH_ACCESS_TTL_S": str(wb.expect.ws.expiring_token_ttl_s)}, scope)
        ready = await inst.wait_answering("/health/ready", wb.env.timeouts.startup_s)
        assert ready.status_code == 200, f"second auth not ready: {ready.status_code} {inst.output[-300:]}"
        other = auth_client(wb.env, url=inst.url)
        scope.defer(other.aclose)
        return other
    return await wb.shared("expiring_token_auth", start)


async def assert_handshake_refused(backends: Sequence[AsyncBackend], token: str | None, detail: str,
                                   headers: dict[str, str] | None = None) -> None:
    """Refused before the upgrade with 401 `invalid_token` on every instance, by header and (with
    a token) by subprotocol, with `detail` in the reason and the usual error body."""
    for backend in backends:
        for via in (("header",) if token is None else ("header", "subprotocol")):
            status, body = await backend.socket_refused(token, via, headers)
            shown = redact(json.dumps(body))[:200]
            assert status == 401 and set(body) == {"error", "detail", "request_id"}, (backend.url, via, status, shown)
            assert body["error"] == "invalid_token" and detail in body["detail"], (backend.url, via, shown)


async def admin_for_broadcast(env: Env, auth: AsyncAuth, ck: Check) -> User:
    """A user with the admin role, which `POST /api/admin/broadcast` requires. Granting it writes
    to auth's database, so the check is skipped where the workbook does not own the stack."""
    if not env.allows("destructive"):
        skip(f"env '{env.name}': making an admin writes to auth's database (destructive envs only)")
    admin = await auth.new_user(ck)
    await auth.grant_role(admin, "admin")
    return admin


async def socket_fleet(ck: Check, auth: AsyncAuth, backends: tuple[AsyncBackend, AsyncBackend], count: int,
                       load: Load) -> list[Socket]:
    """`count` sockets, alternately on each instance, of as many users as the per-user connection
    limit needs, opened `load.max_concurrency` at a time and within `load.max_duration_s`."""
    users = [await auth.new_user(ck)]
    first = await backends[0].socket(ck, users[0])
    per_user = first.limits["max_connections_per_user"]
    users += await gather_bounded(load.max_concurrency,
                                  [lambda: auth.new_user(ck) for _ in range(math.ceil(count / per_user) - 1)])
    opening = gather_bounded(load.max_concurrency, [
        lambda i=i: backends[i % 2].socket(ck, users[i // per_user]) for i in range(1, count)])
    return [first, *await asyncio.wait_for(opening, load.max_duration_s)]


# -- talking to a socket -------------------------------------------------------------------------

async def request_reply(sock: Socket, type_: str, reply: str, **fields: Any) -> Message:
    """Send one message; its first answer of type `reply`. An `error` first fails here, naming
    what the gateway said, so a refused request does not read as a timeout."""
    await sock.send(type_, **fields)
    got = await sock.until(lambda m: m["type"] in (reply, "error"))
    assert got[-1]["type"] == reply, f"{type_}: got {got[-1]['type']} {got[-1]['payload']}"
    return got[-1]


async def refused_with(sock: Socket, code: str, type_: str, **fields: Any) -> dict[str, Any]:
    """Send one message that the gateway must refuse with error `code`; the error's payload."""
    await sock.send(type_, **fields)
    got = await sock.until(lambda m: m["type"] == "error")
    assert got[-1]["payload"]["code"] == code, (type_, got[-1]["payload"], message_types(got))
    return got[-1]["payload"]


async def follow_thread(sock: Socket, thread_id: str) -> list[str]:
    """Subscribe `sock` to the thread; the threads it follows now, as the gateway answered."""
    return (await request_reply(sock, "subscribe_thread", "subscribed", thread_id=thread_id))["payload"]["threads"]


async def unfollow_thread(sock: Socket, thread_id: str) -> list[str]:
    """Unsubscribe `sock` from the thread; the threads it still follows, as the gateway answered."""
    return (await request_reply(sock, "unsubscribe_thread", "unsubscribed", thread_id=thread_id))["payload"]["threads"]


async def assert_socket_alive(sock: Socket) -> None:
    """The socket still answers: a ping with a fresh nonce comes back as its own pong (other
    messages may come first)."""
    nonce = uuid.uuid4().hex
    await sock.send("ping", payload=nonce)
    try:
        await sock.until(lambda m: m["type"] == "pong" and m["payload"].get("echo") == nonce, 5)
    except PlatformError as e:
        raise AssertionError(f"no pong echoing the ping's nonce: {e}") from None
    assert sock.close_code is None, f"closed {sock.close_code} right after answering"


async def assert_next_is_pong(sock: Socket) -> None:
    """The socket's very next message answers a ping: nothing else (a late or second error for
    an earlier bad frame) is queued before it."""
    nonce = uuid.uuid4().hex
    await sock.send("ping", payload=nonce)
    pong = await sock.next(5)
    assert pong["type"] == "pong" and pong["payload"]["echo"] == nonce, pong
    assert sock.close_code is None, sock.close_code


async def next_replies(sock: Socket, n: int, kinds: tuple[str, ...] = ("pong", "error")) -> list[Message]:
    """The next `n` answers of these kinds (one per message sent), in the order they came."""
    return [(await sock.until(lambda m: m["type"] in kinds))[-1] for _ in range(n)]


async def ping_flood(sock: Socket, n: int) -> list[Message]:
    """`n` pings back to back (`payload` = their index), then their `n` answers."""
    for i in range(n):
        await sock.send("ping", payload=i)
    return await next_replies(sock, n)


async def until_then_quiet(sock: Socket, match: Callable[[Message], bool] | str, within_s: float) -> list[Message]:
    """Messages up to the first that matches (what the check waits for, at most `within_s`) and
    whatever comes within QUIET_S after it: a leak or a duplicate arriving late shows up there.
    Nothing matching is no error here: the check's assert then says what did arrive."""
    test = (lambda m: m["type"] == match) if isinstance(match, str) else match
    got, _ = await read_until(sock, lambda seen: test(seen[-1]), within_s)
    return got + await sock.quiet(QUIET_S)


def run_ended(message: Message) -> bool:
    """Whether `message` ends a run (what a client waits for to know the run is over)."""
    return message["type"] in RUN_END


async def read_until(sock: Socket, done: Callable[[list[Message]], bool], within_s: float
                     ) -> tuple[list[Message], int | None]:
    """Messages until `done(messages so far)`, the socket closes or `within_s` runs out: (messages,
    close code). For sockets that must stay open through an outage, where `until` would stop at
    the first close."""
    got: list[Message] = []
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(await sock.next(left))
        except (TimeoutError, ConnectionClosed):
            break
        if done(got):
            break
    return got, sock.close_code


def sized_ping(size: int) -> tuple[str, str]:
    """A `ping` frame of exactly `size` UTF-8 bytes and its nonce (echoed in the pong)."""
    nonce = uuid.uuid4().hex
    head = json.dumps({"type": "ping", "payload": nonce, "pad": ""})
    if size < len(head):
        raise ValueError(f"a ping frame needs at least {len(head)} bytes")
    return json.dumps({"type": "ping", "payload": nonce, "pad": "x" * (size - len(head))}), nonce


def sized_user_message(thread_id: str, size: int) -> tuple[str, str]:
    """A `user_message` frame of exactly `size` UTF-8 bytes but fewer characters (4-byte emoji,
    then ASCII to fill), and its content: the limit counts bytes, not characters."""
    head = json.dumps({"type": "user_message", "thread_id": thread_id, "content": ""}, ensure_ascii=False)
    room = size - len(head.encode())
    wide = min(room // 4, 30_000)
    content = "🧪" * wide + "x" * (room - 4 * wide)
    if len(content) > 32_000 or wide == 0:
        raise ValueError(f"a {size}-byte frame does not fit a user_message of wide characters")
    frame = json.dumps({"type": "user_message", "thread_id": thread_id, "content": content}, ensure_ascii=False)
    return frame, content


# -- the limits a socket announces, enforced -----------------------------------------------------

async def assert_frame_limit_enforced(ck: Check, backend: AsyncBackend, user: User, max_bytes: int) -> None:
    """A frame of exactly `max_bytes` is answered and one byte more closes the socket with 1009:
    the size the instance announces is the size it enforces."""
    sock = await backend.socket(ck, user)
    frame, nonce = sized_ping(max_bytes)
    await sock.send_raw(frame)
    pong = (await sock.until("pong", 5))[-1]
    assert pong["payload"]["echo"] == nonce, f"{backend.url}: a {max_bytes}-byte frame was not answered: {pong}"
    await sock.send_raw(sized_ping(max_bytes + 1)[0])
    try:
        code, reason = await sock.closed(5)
    except PlatformError:
        raise AssertionError(f"{backend.url}: a frame of {max_bytes + 1} bytes left the socket open: "
                             f"the size enforced is not the {max_bytes} announced") from None
    assert code == 1009, f"{backend.url}: a frame of {max_bytes + 1} bytes closed with {code} {reason!r}, not 1009"


async def assert_burst_enforced(sock: Socket, burst: int, rate: float) -> None:
    """`burst` messages at once are all handled and the ones past it (beyond what refilled
    meanwhile at `rate` per second) draw `rate_limited`."""
    t0 = time.monotonic()
    got = await ping_flood(sock, burst + 10)
    took = time.monotonic() - t0
    served = [i for i, m in enumerate(got) if m["type"] == "pong"]
    assert served[:burst] == list(range(burst)), f"a message within the burst of {burst} was refused: {served}"
    assert len(served) <= burst + math.ceil(took * rate) + 1, \
        f"{len(served)} of {len(got)} served in {took:.2f} s: the burst enforced is not {burst} ({rate}/s)"
    refused = [m["payload"]["code"] for m in got if m["type"] == "error"]
    assert refused and set(refused) == {"rate_limited"}, f"past the burst of {burst}: {refused[:3]}"


async def assert_connection_cap_enforced(ck: Check, auth: AsyncAuth, backends: tuple[AsyncBackend, AsyncBackend],
                                         cap: int) -> None:
    """A user may hold `cap` sockets over both instances together and the next handshake is
    refused with 429 on either: the per-user limit announced is the one enforced."""
    user = await auth.new_user(ck)
    for i in range(cap):
        await backends[i % 2].socket(ck, user)
    for backend in backends:
        try:
            status, body = await backend.socket_refused(user.access)
        except PlatformError:
            raise AssertionError(f"{backend.url}: socket {cap + 1} of one user was accepted: "
                                 f"the cap enforced is not the {cap} announced") from None
        assert (status, body.get("error")) == (429, "too_many_connections"), \
            f"{backend.url}: socket {cap + 1} of one user answered {status} {body}"


# -- runs over a socket --------------------------------------------------------------------------

async def socket_run(sock: Socket, thread_id: str, **body: Any) -> tuple[dict[str, Any], list[Message]]:
    """`start_agent` of the probe on `sock`: the accepted run and every message of the thread after
    `run_accepted` up to the first run end. The whole thread is kept, not only this run's
    messages, so an event of another run, a duplicate or a stray message shows in the result."""
    await sock.send("start_agent", agent=PROBE, thread_id=thread_id, **body)
    got = await sock.until(lambda m: m["type"] in (*RUN_END, "error"))
    assert got[-1]["type"] != "error", f"start_agent refused: {got[-1]['payload']}"
    accepted = [m for m in got if m["type"] == "run_accepted"]
    assert len(accepted) == 1 and got.index(accepted[0]) < len(got) - 1, message_types(got)
    after = got[got.index(accepted[0]) + 1:]
    return accepted[0]["payload"]["run"], [m for m in after if m["thread_id"] == thread_id]


async def start_socket_run(sock: Socket, thread_id: str, **fields: Any) -> dict[str, Any]:
    """`start_agent` of the probe on `sock`; the run as `run_accepted` described it."""
    await sock.send("start_agent", agent=PROBE, thread_id=thread_id, **fields)
    return (await sock.until("run_accepted"))[-1]["payload"]["run"]


async def run_end_events(sock: Socket, run_id: str, within_s: float | None = None) -> list[Message]:
    """Every numbered event of the run that reached `sock`, once the run's last one arrived
    (runs interleaved on the same socket are left out; an end already read, while waiting for
    another run's, counts)."""
    def run_end(m: Message) -> bool:
        return m["type"] in RUN_END and m["run_id"] == run_id

    if not any(run_end(m) for m in sock.received):
        await sock.until(run_end, within_s)
    return [m for m in sock.received if m["run_id"] == run_id and m["event_id"] is not None]


async def socket_run_to_end(sock: Socket, thread_id: str, **fields: Any) -> tuple[dict[str, Any], list[Message]]:
    """Start a probe run over `sock`; the accepted run and all its events, once it ended."""
    run = await start_socket_run(sock, thread_id, **fields)
    return run, await run_end_events(sock, run["id"])


async def resume_to_run_end(sock: Socket, thread_id: str, last_event_id: int, within_s: float = 30.0
                            ) -> tuple[dict[str, Any], list[Message]]:
    """`resume` from `last_event_id` and read until both `resume_complete` and the run's end have
    come: a run that ended while the client was away ends inside the replay, before
    `resume_complete`. The `resume_complete` payload and every message read."""
    await sock.send("resume", thread_id=thread_id, last_event_id=last_event_id)
    got = await sock.until("resume_complete", within_s)
    if not any(m["type"] in RUN_END for m in thread_events(got, thread_id)):
        got += await sock.until(lambda m: m["type"] in RUN_END, within_s)
    return next(m for m in got if m["type"] == "resume_complete")["payload"], got


async def run_once_ended(backend: AsyncBackend, access: str, run_id: str, within_s: float) -> dict[str, Any]:
    """The run over REST once it left queued/running: what a client reloading the run sees."""
    return await poll(lambda: backend.run(access, run_id), until=lambda r: r["status"] not in ("queued", "running"),
                      within_s=within_s, what=f"run {run_id} over REST no longer queued or running")


async def step_event_ids(backend: AsyncBackend, access: str, run_id: str) -> list[int]:
    """The event ids of the run's persisted steps: what a client that resyncs reads from REST."""
    return [s["event_id"] for s in await backend.run_steps(access, run_id)]


async def steps_at_least(backend: AsyncBackend, access: str, run_id: str, n: int, within_s: float) -> list[dict[str, Any]]:
    """The run's persisted steps once there are at least `n` (the run went on while a client was away)."""
    return await poll(lambda: backend.run_steps(access, run_id), until=lambda steps: len(steps) >= n,
                      within_s=within_s, what=f"{n} steps of run {run_id}")


def tool_event_pair(events: Sequence[Message]) -> tuple[Message, Message]:
    """The run's one `tool_executing` and one `tool_completed`."""
    calls, dones = ([m for m in events if m["type"] == t] for t in ("tool_executing", "tool_completed"))
    assert len(calls) == len(dones) == 1, f"tool events: {message_types(events)}"
    return calls[0], dones[0]


# -- execution context ---------------------------------------------------------------------------

def traceparent_id() -> str:
    """A W3C traceparent-shaped trace id (what a client would propagate)."""
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


def correlation_ids() -> dict[str, str]:
    """A fresh `request_id` and `trace_id`, as a client sends them with a run."""
    return {"request_id": f"req-{uuid.uuid4()}", "trace_id": traceparent_id()}


def run_context(user: User, run: dict[str, Any]) -> dict[str, Any]:
    """The execution context every event of `run` must carry (`payload.context`)."""
    return {"request_id": run["request_id"], "trace_id": run["trace_id"], "user_id": user.id,
            "thread_id": run["thread_id"], "run_id": run["id"]}


def events_with_other_context(events: Sequence[Message], want: dict[str, Any]) -> list[tuple[str, Any]]:
    """(type, context) of every event whose `payload.context` is not `want`: each one is another
    run's (or no run's) context leaking into this run."""
    return [(m["type"], m["payload"].get("context")) for m in events if m["payload"].get("context") != want]


@dataclass
class UserRun:
    """One user of a concurrent-runs check: their thread, their sockets (the first started the
    run; a second, on the other instance, follows the thread) and the ids they sent with it."""
    user: User
    thread: dict[str, Any]
    socks: list[Socket]
    request_id: str
    trace_id: str
    run_id: str = ""

    @property
    def sock(self) -> Socket:
        return self.socks[0]

    def context(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "trace_id": self.trace_id, "user_id": self.user.id,
                "thread_id": self.thread["id"], "run_id": self.run_id}


async def concurrent_user_runs(ck: Check, auth: AsyncAuth, backends: tuple[AsyncBackend, AsyncBackend], n: int,
                               watch: bool = False, **run: Any) -> list[UserRun]:
    """`n` users (alternating between the instances), each with a thread and a socket, their probe
    runs started at the same moment; watch=True: a second socket per user, on the other
    instance, follows the thread. A long run still going when the check ends is stopped then."""
    async def one(i: int) -> UserRun:
        home, other = backends if i % 2 == 0 else backends[::-1]
        user, thread = await user_with_thread(auth, home, ck)
        socks = [await home.socket(ck, user)] + ([await other.socket(ck, user)] if watch else [])
        for follower in socks[1:]:
            await follow_thread(follower, thread["id"])
        return UserRun(user, thread, socks, f"{ck.ns}-{i}", uuid.uuid4().hex)

    people = list(await asyncio.gather(*(one(i) for i in range(n))))
    await asyncio.gather(*(p.sock.send("start_agent", agent=PROBE, thread_id=p.thread["id"], request_id=p.request_id,
                                       trace_id=p.trace_id, **run) for p in people))
    for p in people:
        p.run_id = (await p.sock.until("run_accepted"))[-1]["run_id"]
        if run.get("scenario") == "long":
            ck.defer(backends[0].stop_run_raw, p.user.access, p.run_id)
    return people


# -- server-side state in Redis ------------------------------------------------------------------

async def connection_record(redis: Redis, sock: Socket) -> dict[str, Any]:
    """The connection's Redis record as the gateway wrote it, `threads` decoded ({} when gone)."""
    raw = await redis.hgetall(f"ws:conn:{sock.connection_id}")
    return {**raw, "threads": json.loads(raw["threads"])} if "threads" in raw else raw


async def connection_registered(redis: Redis, user: User, sock: Socket) -> tuple[bool, bool]:
    """(the connection's Redis record exists, its id is in the user's connection set): the two
    places the per-user connection limit reads."""
    return (bool(await redis.exists(f"ws:conn:{sock.connection_id}")),
            bool(await redis.sismember(f"ws:user_conns:{user.id}", sock.connection_id)))


async def connection_state_gone(redis: Redis, user: User, sock: Socket, within_s: float = 5.0) -> None:
    """Wait until the closed connection's record and set member are gone: the server removes them
    as it finishes the close, just after the client saw the socket end."""
    await poll(lambda: connection_registered(redis, user, sock), until=lambda s: s == (False, False), within_s=within_s,
               what=f"ws:conn:{sock.connection_id} and its ws:user_conns member removed (record, member)")


async def post_message_event(backend: AsyncBackend, user: User, thread: dict[str, Any]) -> str:
    """A user message through REST: one `message_created` event on the thread, for whoever
    follows it; the message's id."""
    resp = await backend.add_message_raw(user.access, thread["id"], "state probe")
    assert resp.status_code == 201, f"add message: {resp.status_code} {redact(resp.text)[:200]}"
    return resp.json()["id"]


# -- broadcast -----------------------------------------------------------------------------------

async def broadcast_arrivals(socks: Sequence[Socket], via: AsyncBackend, admin: User, text: str
                             ) -> tuple[list[float | None], list[Message | None], dict[str, Any]]:
    """Broadcast `text` through `via`; per socket the ms from the POST to the notice's arrival and
    the notice (None: it never came within 10 s), and the POST's answer."""
    async def arrival(sock: Socket) -> tuple[float | None, Message | None]:
        try:
            note = (await sock.until(lambda m: m["type"] == "system_notice" and m["payload"].get("message") == text,
                                     10))[-1]
            return (time.perf_counter() - sent) * 1000, note
        except PlatformError:
            return None, None

    waiting, sent = [asyncio.create_task(arrival(s)) for s in socks], time.perf_counter()
    resp = await via.broadcast_raw(admin.access, text)
    if resp.status_code != 202:
        for task in waiting:
            task.cancel()
    assert resp.status_code == 202, f"broadcast: {resp.status_code} {redact(resp.text)[:200]}"
    arrived = await asyncio.gather(*waiting)
    return [ms for ms, _ in arrived], [note for _, note in arrived], resp.json()


def show_fanout_latency(samples: dict[str, list[float]], stats: LatencyStats, budget_p99_ms: float) -> None:
    """A histogram of POST-to-arrival times per instance, with p50, p99 and the p99 budget marked:
    where the tail is tells which instance's hub is slow."""
    p50, p99 = stats.p50, stats.percentile(99)
    fig = go.Figure([go.Histogram(x=v, name=f"sockets on {k}", opacity=0.6, nbinsx=40) for k, v in samples.items()])
    for x, label in ((p50, "p50"), (p99, "p99"), (budget_p99_ms, "p99 budget")):
        fig.add_vline(x=x, line_dash="dash" if "budget" in label else "dot", annotation_text=f"{label} {x:.0f} ms")
    fig.update_layout(barmode="overlay", height=340, margin={"t": 40, "b": 40}, xaxis_title="POST to arrival (ms)",
                      title=f"broadcast fan-out: {stats.count} arrivals")
    display({"application/vnd.plotly.v1+json": fig.to_plotly_json(), "text/plain": f"fan-out latency: {stats}"}, raw=True)


# -- health, breakers, metrics -------------------------------------------------------------------

async def ready_events_when(backend: AsyncBackend, done: Callable[[dict[str, Any]], bool], within_s: float,
                            what: str) -> tuple[int, dict[str, Any]]:
    """(status, body) of `/health/ready` once `done(body["checks"]["events"])` holds."""
    async def read() -> tuple[int, dict[str, Any]]:
        resp = await backend.ready_raw()
        return resp.status_code, resp.json()
    return await poll(read, until=lambda r: done(r[1]["checks"]["events"]), within_s=within_s, every_s=0.1,
                      what=f"{backend.url}: {what}")


async def ready_and_subscribed(backend: AsyncBackend, within_s: float) -> dict[str, Any]:
    """`/health/ready` of a restarted instance once it is ready and its hub listens to Redis again."""
    async def read() -> tuple[int, dict[str, Any]]:
        resp = await backend.ready_raw()
        return resp.status_code, resp.json()
    _, body = await poll(read, until=lambda r: r[0] == 200 and r[1]["checks"]["events"]["subscribed"], within_s=within_s,
                         every_s=0.2, what=f"{backend.url} ready and subscribed")
    return body


async def broadcast_subscribers(redis: Redis) -> int:
    """How many connections listen on `ws:broadcast`: each instance's hub holds one while its Redis
    subscription is up. Read from Redis itself, so no instance's connection pool is touched."""
    [(_, count)] = await redis.pubsub_numsub("ws:broadcast")
    return int(count)


async def redis_breaker(backend: AsyncBackend) -> dict[str, Any]:
    """The instance's `redis` circuit breaker as it reports it (state, failures, transitions)."""
    return (await backend.breakers())["redis"]


async def closed_redis_breaker(backend: AsyncBackend, user: User, thread: dict[str, Any]) -> dict[str, Any]:
    """The instance's `redis` breaker, closed: one an earlier outage left open is waited out to
    half-open and given its trial publish (a message through REST), so a check starts clean."""
    b = await redis_breaker(backend)
    if b["state"] == "open":
        b = await poll(lambda: redis_breaker(backend), until=lambda s: s["state"] != "open",
                       within_s=b["retry_after_s"] + 1, what="the redis breaker past its reset time")
    if b["state"] != "closed":
        resp = await backend.add_message_raw(user.access, thread["id"], "breaker trial")
        assert resp.status_code == 201, f"trial message: {resp.status_code} {redact(resp.text)[:200]}"
        b = await redis_breaker(backend)
    assert b["state"] == "closed", f"the breaker did not close after Redis returned: {b}"
    return b


async def metric_value(backend: AsyncBackend, name: str, **labels: str) -> float:
    """One sample of the instance's `/metrics` (0 when absent: counters start there)."""
    return metric(await backend.metrics(), name, **labels)


async def steady_metric(backend: AsyncBackend, name: str, within_s: float = 3.0) -> float:
    """A sample once two reads 0.2 s apart agree: sockets an earlier check closed may still be
    ending, and a delta measured from a moving base means nothing."""
    return await poll(lambda: metric_value(backend, name), until=lambda _: True, settle_s=0.2, every_s=0.1,
                      within_s=within_s, what=f"{backend.url} {name} steady")


async def metrics_when(backend: AsyncBackend, done: Callable[[str], bool], what: str, within_s: float = 2.0) -> str:
    """The instance's `/metrics` once `done(text)` holds: some samples move just after the client
    saw what moved them (a socket's close, a run's end)."""
    return await poll(backend.metrics, until=done, within_s=within_s, what=f"{backend.url} /metrics: {what}")


def metric_moved(before: str, after: str, name: str, **labels: str) -> float:
    """How much one sample moved between two `/metrics` reads."""
    return metric(after, name, **labels) - metric(before, name, **labels)


def metric_samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """{label set: value} of every sample called `name`."""
    return {frozenset(s.labels.items()): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


def metric_changes(before: str, after: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every label set of `name` whose value changed, with its change: a check asserts the whole
    of it, so a sample that moved where it should not shows too."""
    b, a = metric_samples(before, name), metric_samples(after, name)
    return {tuple(sorted(k)): a[k] - b.get(k, 0) for k in a if a[k] != b.get(k, 0)}


def record_server_pings(sock: Socket) -> list[float]:
    """Arrival times (monotonic) of the server's protocol pings on `sock`, from now on: the list
    fills as the client's protocol handler sees each ping frame."""
    seen: list[float] = []
    process = sock.conn.process_event

    def spy(event: Frame) -> None:
        if event.opcode is Opcode.PING:
            seen.append(time.monotonic())
        return process(event)

    sock.conn.process_event = spy  # type: ignore[method-assign]
    return seen
