"""Steps of 10_integration: one user's journey across every service (traced with a W3C
`traceparent` the check chose), its spans in `otel_traces`, a dependency killed and the readiness
each service should answer with, and Prometheus counters read around what a check did."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from workbook import faults
from workbook.clients import clickhouse
from workbook.clients.platform.auth import AsyncAuth
from workbook.clients.platform.backend import AsyncBackend, metric
from workbook.clients.platform.common import ApiClient, User
from workbook.clients.platform.ws import Socket
from workbook.clients.scope import Check
from workbook.params import Env
from workbook.polling import poll
from workbook.steps.agents import COST_REQUEST, OUTCOMES, STEP_KINDS


@dataclass
class Trace:
    """A trace context a check started: the trace id and the span id its own (client) span would have."""
    trace_id: str
    span_id: str

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


def new_trace() -> Trace:
    return Trace(secrets.token_hex(16), secrets.token_hex(8))


@dataclass
class Journey:
    user: User
    thread: dict[str, Any]
    run: dict[str, Any]
    trace: Trace
    latency_ms: float  # the traced POST that started the run, as the check measured it
    socket: Socket  # on the other backend instance, subscribed to the thread


async def journey(scope: Check, auth: AsyncAuth, backend: AsyncBackend, backend2: AsyncBackend) -> Journey:
    """Register and log in (auth: PostgreSQL, Redis), open a thread (backend: PostgreSQL), watch it
    from a socket on the other instance (Redis pub/sub), start the supervisor on a request that
    reaches the data tools (agents, the model, ClickHouse), traced from here, and wait for its end."""
    user = await auth.new_user(scope)
    thread = await backend.new_thread(scope, user, title=f"{scope.ns} journey")
    sock = await backend2.subscribed_socket(scope, user, thread["id"])
    trace = new_trace()
    t0 = time.perf_counter()
    resp = await backend.post(f"/api/threads/{thread['id']}/runs", token=user.access,
                              json={"input": COST_REQUEST}, headers={"traceparent": trace.traceparent})
    latency_ms = (time.perf_counter() - t0) * 1000
    assert resp.status_code in (200, 201, 202), f"start run: {resp.status_code} {resp.text[:300]}"
    run_id = resp.json()["id"]
    # Read the socket while the run goes (it answers the server's pings as it reads), then the run.
    await sock.until(lambda m: m["type"] in OUTCOMES and m["run_id"] == run_id, 30)
    run = await backend.settled(user.access, run_id)
    return Journey(user, thread, run, trace, latency_ms, sock)


def run_events(j: Journey) -> list[dict[str, Any]]:
    return [m for m in j.socket.received if m.get("run_id") == j.run["id"] and m["type"] in STEP_KINDS]


def token_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified: only to find which session the platform says it belongs to."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- otel_traces -------------------------------------------------------------------------------------

SPAN_COLUMNS = ("TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName", "Duration", "StatusCode")


async def spans(env: Env, trace_id: str) -> list[dict[str, Any]]:
    ch = clickhouse.client(env)
    try:
        result = await asyncio.to_thread(
            ch.query, f"SELECT {', '.join(SPAN_COLUMNS)} FROM otel_traces WHERE TraceId = {{t:String}} ORDER BY Timestamp",
            parameters={"t": trace_id})
        return [dict(zip(SPAN_COLUMNS, row)) for row in result.result_rows]
    finally:
        ch.close()


async def spans_when(env: Env, trace_id: str, done: Any, within_s: float, what: str) -> list[dict[str, Any]]:
    """The trace's spans once `done(spans)` holds (they arrive in batches, off the request path)."""
    return await poll(lambda: spans(env, trace_id), until=done, within_s=within_s, every_s=0.2, what=what)


def orphans(found: Sequence[dict[str, Any]], outside_parent: str) -> list[dict[str, Any]]:
    """Spans whose parent is neither in the trace nor the caller's own span."""
    ids = {s["SpanId"] for s in found} | {outside_parent}
    return [s for s in found if s["ParentSpanId"] and s["ParentSpanId"] not in ids]


def server_spans(found: Sequence[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    """The spans in which `service` answered a request."""
    return [s for s in found if s["ServiceName"] == service and s["SpanKind"] == "Server"]


def parent_of_server(found: Sequence[dict[str, Any]], service: str) -> dict[str, Any] | None:
    """The span that called `service` (its server span's parent), once both are in `found`."""
    by_id = {s["SpanId"]: s for s in found}
    server = server_spans(found, service)
    return by_id.get(server[0]["ParentSpanId"]) if server else None


# -- health cascade ------------------------------------------------------------------------------------

def expected_readiness(env: Env, dependency: str, services: Sequence[str]) -> dict[str, tuple[int, str | None]]:
    """What params' dependency map says each service answers while `dependency` is down:
    (503, "down") if it needs it, (200, "degraded") if it only uses it, (200, None) otherwise."""
    out: dict[str, tuple[int, str | None]] = {}
    for svc in services:
        spec = env.expect.config.dependencies["auth" if svc == "auth" else "backend"]
        out[svc] = ((503, "down") if dependency in spec.required else
                    (200, "degraded") if dependency in spec.optional else (200, None))
    return out


async def readiness(clients: Sequence[ApiClient], dependency: str) -> dict[str, tuple[int, str | None]]:
    """Each service's (status, where it names `dependency`: down, degraded or nowhere)."""
    out: dict[str, tuple[int, str | None]] = {}
    for client in clients:
        try:
            resp = await client.get("/health/ready")
        except httpx.HTTPError as e:
            out[client.service] = (0, type(e).__name__)
            continue
        body = resp.json()
        named = "down" if dependency in body.get("down", []) else "degraded" if dependency in body.get("degraded", []) else None
        out[client.service] = (resp.status_code, named)
    return out


async def killed_readiness(env: Env, dependency: str, clients: Sequence[ApiClient],
                           within_s: float) -> dict[str, tuple[int, str | None]]:
    """Kill `dependency`, wait (up to `within_s`) for every service's readiness to say what the
    dependency map expects, return what they said; the dependency is restarted on the way out."""
    expected = expected_readiness(env, dependency, [c.service for c in clients])
    async with faults.service_down(env, dependency):
        try:
            return await poll(lambda: readiness(clients, dependency), until=lambda r: r == expected,
                              within_s=within_s, every_s=0.2, what=f"readiness with {dependency} down")
        except AssertionError:
            return await readiness(clients, dependency)


async def all_ready(clients: Sequence[ApiClient], within_s: float) -> float:
    """Seconds until every service answers ready with nothing down or degraded."""
    t0 = time.perf_counter()

    async def states() -> list[tuple[int, str]]:
        out = []
        for c in clients:
            try:
                resp = await c.get("/health/ready")
                out.append((resp.status_code, resp.json().get("health", "")))
            except httpx.HTTPError as e:
                out.append((0, type(e).__name__))
        return out

    await poll(states, until=lambda s: all(x == (200, "ok") for x in s), within_s=within_s, every_s=0.2,
               what="every service ready and healthy")
    return time.perf_counter() - t0


# -- metrics --------------------------------------------------------------------------------------------

async def metric_sum(instances: Sequence[AsyncBackend], name: str, **labels: str) -> float:
    """`sum(name{labels})` across instances."""
    total = 0.0
    for inst in instances:
        total += metric(await inst.metrics(), name, **labels)
    return total


# -- service credential rotation --------------------------------------------------------------------

ROTATING_CLIENT = "rotating"


async def auth_mid_rotation(scope: Check, env: Env, old: str, new: str, window_open: bool) -> AsyncAuth:
    """A second auth instance (own scratch database) whose only service client is being rotated
    from `old` to `new`: inside the rotation window (`window_open`) or after it."""
    from workbook.clients.platform.auth import auth as auth_client

    until = time.time() + (3600 if window_open else -1)
    clients = {ROTATING_CLIENT: {"secret": new, "previous_secret": old, "previous_valid_until": until,
                                 "scopes": ["auth:introspect"]}}
    inst = await faults.started_instance(env, "auth", {"AUTH_SERVICE_CLIENTS": json.dumps(clients)}, scope,
                                         own_database=True)
    await poll(lambda: inst.wait_answering("/health/ready", env.timeouts.startup_s), until=lambda r: r.status_code == 200,
               within_s=env.timeouts.startup_s, what="the rotating auth instance ready")
    client = auth_client(env, url=inst.url)
    scope.defer(client.aclose)
    return client


async def token_status(auth: AsyncAuth, secret: str) -> int:
    return (await auth.service_token_raw(client_id=ROTATING_CLIENT, secret=secret)).status_code
