"""Steps of the Redis notebook (07): where the primary is, what Sentinel says, who is connected,
the backends' leader lease, and holding a failover off while a primary is killed on purpose."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import redis.asyncio as aioredis

from workbook import faults
from workbook.checks import skip, using
from workbook.clients import redis
from workbook.clients.platform import auth as auth_client
from workbook.clients.platform import backend as backend_client
from workbook.clients.platform.auth import AsyncAuth
from workbook.clients.platform.backend import AsyncBackend, metric
from workbook.clients.platform.common import Tokens, random_ip, tokens_from, unique_email
from workbook.clients.scope import Check
from workbook.context import Workbook
from workbook.params import Env, SentinelExpect
from workbook.polling import poll
from workbook.stack.redis import DATA_SERVERS, SENTINELS

T = TypeVar("T")
# The second auth instance's login-rate window: a reset is seen in seconds. The exact-limit checks'
# bursts (a few seconds) open their windows through the stack's auth, so this may be shorter.
SHORT_WINDOW_S = 3
EVERYSEC_S = 1.0  # what `appendfsync everysec` means


def watched(env: Env) -> SentinelExpect:
    """The env's Sentinel setup, or the calling check skipped: a Redis at a plain URL has no failover."""
    if env.expect.redis.sentinel is None or env.service("redis").sentinel is None:
        skip(f"env '{env.name}': Redis is one server at a URL (no Sentinel in params): nothing fails over")
    return env.expect.redis.sentinel  # type: ignore[return-value]


def sentinel_clients(env: Env, ck: Check) -> list[aioredis.Redis]:
    """One client per Sentinel of the env's Redis, closed with `ck`."""
    sentinels = redis.sentinels(env)
    if sentinels is None:
        skip(f"env '{env.name}': Redis is one server at a URL (no Sentinel in params)")
    for s in sentinels.sentinels:  # type: ignore[union-attr]
        ck.defer(s.aclose)
    return list(sentinels.sentinels)  # type: ignore[union-attr]


async def primary_address(env: Env, ck: Check) -> tuple[str, int]:
    """Where the Sentinels say the primary is (the first that answers)."""
    master = watched(env).master_name
    for s in sentinel_clients(env, ck):
        try:
            host, port = await s.sentinel_get_master_addr_by_name(master)
            return str(host), int(port)
        except (OSError, aioredis.RedisError):
            continue
    raise AssertionError("no Sentinel answered where the primary is")


async def primary_service(env: Env, ck: Check) -> str:
    """Which of the stack's data servers is the primary now, by Sentinel."""
    _, port = await primary_address(env, ck)
    for name in DATA_SERVERS:
        if env.service(name).port == port:
            return name
    raise AssertionError(f"Sentinel names a primary on port {port}, none of the stack's {DATA_SERVERS}")


async def topology_held() -> None:
    """The running check holds every Redis server and Sentinel from here: no failover of another
    notebook or run moves the primary while it reads which server is what."""
    for name in (*DATA_SERVERS, *SENTINELS):
        await using(name)


async def replicated(r: aioredis.Redis, ns: str, timeout_ms: int = 1000) -> None:
    """Everything written to the primary so far is on the replica: a write of the check's own, then
    WAIT for a replica to acknowledge it (replication is one ordered stream, so it carries every
    earlier write). For a failover check whose subject is not what a failover may lose of the
    last writes (the platform's sessions are not WAITed: a loaded machine lags the replica)."""
    await r.set(f"{ns}:replicated", "1", px=60_000)
    acked = await r.wait(1, timeout_ms)
    await r.delete(f"{ns}:replicated")
    assert acked >= 1, f"no replica acknowledged a write within {timeout_ms} ms"


def other(name: str) -> str:
    return DATA_SERVERS[1 - DATA_SERVERS.index(name)]


async def role(env: Env, ck: Check, name: str) -> dict[str, Any]:
    """INFO replication of one data server, asked directly (not through Sentinel)."""
    return await redis.server(env, ck, name).info("replication")


@asynccontextmanager
async def no_failover(env: Env, ck: Check) -> AsyncIterator[None]:
    """Sentinels told not to fail over (down-after raised far beyond the block) inside the block,
    their params' value back after it, also when the check fails: to see what the primary alone
    keeps across a kill -9 and restart."""
    s = watched(env)
    sentinels = sentinel_clients(env, ck)
    for c in sentinels:
        await c.sentinel_set(s.master_name, "down-after-milliseconds", 600_000)
    try:
        yield
    finally:
        for c in sentinels:
            await c.sentinel_set(s.master_name, "down-after-milliseconds", s.down_after_ms)


async def client_names(r: aioredis.Redis) -> Counter[str]:
    """Connections to this server by client name (CLIENT LIST): whose connections they are."""
    return Counter(c["name"] for c in await r.client_list())


async def pool(backend: AsyncBackend) -> dict[str, float]:
    """The instance's Redis pool as its /metrics reports it: open, in_use, max."""
    text = await backend.metrics()
    return {state: metric(text, "backend_redis_pool_connections", state=state) for state in ("open", "in_use", "max")}


@dataclass(frozen=True)
class PoolUse:
    """An instance's connections in use, next to what Redis says they are doing."""
    in_use: float
    waiting: int  # in a subscription or a blocking read: held on purpose, for as long as they wait
    idle: tuple[str, ...]  # the instance's other connections, by the command each last ran: "exists x12"

    @property
    def unexplained(self) -> float:
        return self.in_use - self.waiting


async def pool_use(backend: AsyncBackend, r: aioredis.Redis, who: str) -> PoolUse:
    """The pool's in-use count against the connections named `who` that Redis sees subscribed
    (flag P) or blocked (flag b). Redis is read on both sides of the pool's report: a holder
    caught between two blocking reads on one side is counted from the other."""
    def waiting(clients: list[dict[str, Any]]) -> int:
        return sum(1 for c in clients if c["name"] == who and ({"P", "b"} & set(c["flags"])))

    first = await r.client_list()
    in_use = (await pool(backend))["in_use"]
    last = await r.client_list()
    idle = Counter(c["cmd"] for c in last if c["name"] == who and not {"P", "b"} & set(c["flags"]))
    return PoolUse(in_use, max(waiting(first), waiting(last)), tuple(f"{cmd} x{n}" for cmd, n in idle.most_common()))


async def pool_as_redis_sees_it(backend: AsyncBackend, r: aioredis.Redis, who: str,
                                within_s: float = 5.0) -> tuple[float, int]:
    """(open connections the instance reports, connections named `who` in CLIENT LIST), read
    while the pool held still (the same report before and after Redis's list): other traffic
    opening connections between the two readings is not a disagreement. Once they agree, or the
    last reading when `within_s` is up."""
    async def reading() -> tuple[float, int, float]:
        before = (await pool(backend))["open"]
        seen = (await client_names(r))[who]
        return before, seen, (await pool(backend))["open"]

    last = await reading()
    deadline = time.monotonic() + within_s
    while not (last[0] == last[1] == last[2]) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        last = await reading()
    return last[0], last[1]


async def price_loads(backends: tuple[AsyncBackend, ...]) -> float:
    """Prices the instances read from PostgreSQL on a cache miss, summed over `backends`."""
    texts = await asyncio.gather(*[b.metrics() for b in backends])
    return sum(metric(t, "backend_price_cache_loads_total") for t in texts)


async def leaders(backends: tuple[AsyncBackend, ...]) -> list[dict[str, Any]]:
    """Each instance's view of the leader lease (`/health/leader`)."""
    answers = await asyncio.gather(*[b.get("/health/leader") for b in backends])
    for a in answers:
        assert a.status_code == 200, f"/health/leader: {a.status_code} {a.text[:200]}"
    return [a.json() for a in answers]


async def settled_leaders(backends: tuple[AsyncBackend, ...], lease_s: float) -> list[dict[str, Any]]:
    """`leaders` once the lease has a holder that every instance names alike. A backend that
    another notebook's fault stopped hands its lease on within a lease and a third: a check
    starting then would see no holder yet. Reading from every instance holds them all for the
    check, so no fault of another notebook moves the lease while it runs."""
    def agreed(views: list[dict[str, Any]]) -> bool:
        named = {(v["holder"] or {}).get("instance_id") for v in views}
        return len(named) == 1 and None not in named

    return await poll(lambda: leaders(backends), until=agreed, within_s=lease_s * 4 / 3 + 1, every_s=0.05,
                      what="a leader lease holder every instance names alike")


async def leader_jobs(r: aioredis.Redis, count: int = 200) -> list[dict[str, Any]]:
    """The leader's job records, oldest first: token, instance, slot (the period it ran for)."""
    entries = await r.xrevrange("backend:leader:jobs", count=count)
    return [{"id": tuple(int(p) for p in i.split("-")), "token": int(f["token"]), "instance": f["instance"],
             "slot": int(f["slot"])} for i, f in reversed(entries)]


def token_claims(token: str) -> dict[str, Any]:
    """A JWT's claims as sent (not verified: the platform verifies; a check reads its jti and exp)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def message_text(m: dict[str, Any]) -> str | None:
    """The text of a `message_created` event (None for any other event)."""
    return m["payload"]["message"]["content"] if m["type"] == "message_created" else None



async def second_auth(wb: Workbook, auth: AsyncAuth) -> AsyncAuth:
    """A client of a second auth process (the stack's database, keys and Redis, so the same limiter
    keys) whose login-rate window is `SHORT_WINDOW_S`; started by the first check that needs it,
    stopped at the notebook's end (`wb.shared`)."""
    async def start(scope: Check) -> AsyncAuth:
        issuer = (await auth.config())["issuer"]
        inst = await faults.started_instance(wb.env, "auth", {"AUTH_ISSUER": issuer,
                                                              "AUTH_LOGIN_RATE_WINDOW_S": str(SHORT_WINDOW_S)}, scope)
        ready = await inst.wait_answering("/health/ready", wb.env.timeouts.startup_s)
        assert ready.status_code == 200, f"second auth not ready: {ready.status_code} {inst.output[-300:]}"
        other = auth_client(wb.env, url=inst.url)
        scope.defer(other.aclose)
        return other
    return await wb.shared("second_auth", start)


def fresh_ip() -> str:
    """A client IP no other check uses (auth trusts the stack's X-Forwarded-For)."""
    return random_ip()


def backend_at(env: Env, ck: Check, url: str) -> AsyncBackend:
    """A backend client of another process of it (a third instance), closed with `ck`."""
    client = backend_client(env, url=url)
    ck.defer(client.aclose)
    return client


async def timed(call: Awaitable[T]) -> tuple[float, T]:
    """(milliseconds it took, its result)."""
    t0 = time.perf_counter()
    out = await call
    return (time.perf_counter() - t0) * 1000, out


async def answers_so_far(seen: list[tuple[str, int, float]]) -> list[tuple[str, int, float]]:
    """What `traffic` has recorded until now (a probe for `poll`)."""
    return list(seen)


async def traffic(auth: AsyncAuth, backends: tuple[AsyncBackend, ...], user: Any, stop: asyncio.Event,
                  seen: list[tuple[str, int, float]]) -> list[tuple[str, int, float]]:
    """Token reads at auth and on each backend (each reads the session or the deny-list in Redis),
    one after another until `stop`: each request's (what, status, ms); a request that raised (the
    client gave up) is status 0, appended to `seen` as they come."""
    while not stop.is_set():
        for what, call in (("auth", lambda: auth.me_raw(user.access)),
                           *((b.url, lambda b=b: b.me_raw(user.access)) for b in backends)):
            t0 = time.perf_counter()
            try:
                status = (await call()).status_code
            except Exception:
                status = 0
            seen.append((what, status, (time.perf_counter() - t0) * 1000))
    return seen


def tokens_of(resp: httpx.Response) -> Tokens:
    """The tokens a login or refresh answered with."""
    return tokens_from(resp.json())


async def past_fsync(appendfsync: str) -> None:
    """Wait out the AOF's fsync interval, so what was written before is on disk (what a kill -9 may
    lose is the last interval: Redis's promise, not what the checks look for). `always` needs no
    wait; `no` leaves it to the OS, which no wait here can bound."""
    if appendfsync == "no":
        skip("appendfsync no: the OS decides when the AOF reaches the disk; nothing is promised to check")
    if appendfsync == "everysec":
        await asyncio.sleep(EVERYSEC_S + 0.2)



async def kill_and_restart_primary(env: Env, ck: Check) -> str:
    """kill -9 the primary, start it again on its port (its AOF loaded), until the platform is
    settled; which server it was. Inside `no_failover`, it is still the primary after."""
    primary = await primary_service(env, ck)
    try:
        await faults.kill_process(env, primary)
    finally:
        await faults.restart(env, primary)
    return primary


def service_of(env: Env, backend: AsyncBackend) -> str:
    """The stack service name of a backend client (`backend`, `backend2`)."""
    for name in ("backend", "backend2"):
        if env.service(name).url.rstrip("/") == backend.url:
            return name
    raise AssertionError(f"{backend.url} is no stack backend")


def login_limit_key(email: str) -> str:
    """The login limiter's per-email window key: the email hashed (Redis never holds the address),
    as auth names it (app/auth/ratelimit.py)."""
    return f"auth:rl:email:{hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]}"


async def forget_login_limits(r: aioredis.Redis, email: str) -> None:
    """Drop an email's login window, failures and lockout: a check that limited its user on purpose
    lets its deletion (a login) through at once instead of after the window."""
    key = login_limit_key(email)
    digest = key.rsplit(":", 1)[1]
    await r.delete(key, f"auth:failures:{digest}", f"auth:lockout:{digest}")


def nobody(ck: Check, i: int) -> str:
    """An email no account has, in the check's namespace (a login with it only spends limits)."""
    return unique_email(f"{ck.ns}-nobody{i}")
