"""Steps of 09_load: users and credentials for a Locust run, the run itself in the check's own
directory, what the platform holds afterwards (threads and messages per user, its connection
pool), agent runs/s at a concurrency level, and a fleet of sockets following their users'
threads while runs stream events to them.

Locust runs as processes of its own (`workbook.load.runner`); WebSocket fleets and agent runs
use the workbook's asyncio clients, which hold thousands of sockets in one process where a
gevent user per socket would not.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbook import faults
from workbook.clients import redis
from workbook.clients.platform import AsyncAuth, AsyncBackend, User, random_ip
from workbook.clients.platform.ws import Socket
from workbook.clients.scope import Check
from workbook.concurrency import gather_bounded
from workbook.load.runner import Credential, LoadPlan, LoadResult, run
from workbook.params import Env
from workbook.polling import poll
from workbook.steps.ws import PROBE, RUN_END, iso_epoch


# -- Locust runs -------------------------------------------------------------------------------

def credential(user: User, ns: str) -> Credential:
    return Credential(id=user.id, ns=ns, access=user.access if user.tokens else "", email=user.email,
                      password=user.password, ip=user.ip)


async def credentials(ck: Check, auth: AsyncAuth, count: int, env: Env, login: bool = True) -> list[Credential]:
    """`count` users of the check (deleted with it), each logged in from its own address."""
    users = await gather_bounded(env.load.max_concurrency, [lambda: auth.new_user(ck, login=login)
                                                           for _ in range(count)])
    return [credential(u, ck.ns) for u in users]


def scratch_dir(ck: Check) -> Path:
    """A directory of the check's own for a run's plan (credentials, 0600) and Locust's CSVs,
    removed when the check ends."""
    path = Path(tempfile.mkdtemp(prefix="workbook-load-"))
    ck.defer(shutil.rmtree, path, True)
    return path


async def locust(env: Env, ck: Check, plan: LoadPlan, creds: Sequence[Credential]) -> LoadResult:
    """Run `plan` with Locust as its own processes and return what it measured."""
    return await run(env, plan, creds, scratch_dir(ck))


def created(result: LoadResult) -> dict[str, Counter[str]]:
    """Per user id: the threads its simulated user created and the messages it wrote in each,
    as the user counted the platform's 201s."""
    out: dict[str, Counter[str]] = {}
    for u in result.per_user:
        msgs = Counter(u["created"]["messages"])
        out[u["user_id"]] = Counter({t: msgs[t] for t in u["created"]["threads"]})
    return out


def write_mismatches(result: LoadResult, holds: dict[str, Counter[str]]) -> dict[str, Any]:
    """Users whose stored threads and messages are not what their simulated user wrote: at least
    every write the platform answered 201, at most every write sent (one in flight when the run's
    time ran out may be stored without its answer reaching the user). Empty: exact."""
    out = {}
    for u in result.per_user:
        got, answered = holds.get(u["user_id"], Counter()), Counter(u["created"]["messages"])
        sent = Counter(u["created"]["sending_messages"])
        threads_ok = set(u["created"]["threads"]) <= set(got) and len(got) <= u["created"]["sending_threads"]
        messages_ok = all(answered[t] <= got[t] <= sent[t] for t in got)
        if not (threads_ok and messages_ok):
            out[u["user_id"]] = {"stored": dict(got), "answered": dict(answered), "sent": dict(sent)}
    return out


async def stored(backend: AsyncBackend, creds: Sequence[Credential], env: Env) -> dict[str, Counter[str]]:
    """Per user id, read back through the API: each of its threads and how many messages it holds."""
    by_token = {c.id: c.access for c in creds}

    async def of(user_id: str) -> tuple[str, Counter[str]]:
        token = by_token[user_id]
        listing = await backend.threads(token, limit=100)
        counts = Counter()
        for t in listing["threads"]:
            counts[t["id"]] = (await backend.messages(token, t["id"], limit=100))["total"]
        return user_id, counts

    return dict(await gather_bounded(env.load.max_concurrency, [lambda u=u: of(u) for u in by_token]))


# -- the connection pool -----------------------------------------------------------------------

async def pool(backend: AsyncBackend) -> dict[str, Any]:
    """The instance's PostgreSQL pool as `/health/ready` reports it."""
    return (await backend.ready_raw()).json()["checks"]["postgres"]["pool"]


async def pool_at_rest(backend: AsyncBackend, within_s: float = 5.0) -> dict[str, Any]:
    """The pool once no connection is checked out (requests in flight finish within seconds; a
    connection still out after that was never given back)."""
    return await poll(lambda: pool(backend), until=lambda p: p["checked_out"] == 0, within_s=within_s,
                      what=f"{backend.url} pool with no connection checked out")


@dataclass
class Burst:
    statuses: Counter[int]
    retry_after: set[str]
    slowest_s: float
    created: list[str] = field(default_factory=list)


async def write_burst(backend: AsyncBackend, user: User, n: int, ns: str) -> Burst:
    """`n` thread creations at once against one instance: how each was answered and how long the
    slowest took (a request stuck waiting for a connection shows as a slow one)."""
    async def one(i: int) -> tuple[int, str | None, float, str | None]:
        t0 = time.perf_counter()
        resp = await backend.create_thread_raw(user.access, f"{ns} burst {i}")
        made = resp.json()["id"] if resp.status_code == 201 else None
        return resp.status_code, resp.headers.get("retry-after"), time.perf_counter() - t0, made

    got = await asyncio.gather(*(one(i) for i in range(n)))
    return Burst(Counter(s for s, _, _, _ in got), {r for s, r, _, _ in got if s == 503 and r},
                 max(d for _, _, d, _ in got), [m for *_, m in got if m])


# -- agent runs --------------------------------------------------------------------------------

@dataclass
class Level:
    instances: int
    concurrency: int
    runs: list[dict[str, Any]]
    seconds: float

    @property
    def per_s(self) -> float:
        return len(self.runs) / self.seconds

    @property
    def statuses(self) -> Counter[str]:
        return Counter(r["status"] for r in self.runs)


async def runs_per_second(backends: Sequence[AsyncBackend], user: User, threads: Sequence[dict[str, Any]],
                          concurrency: int, runs_each: int, step_delay_ms: int, within_s: float) -> Level:
    """`concurrency` slots, each on its own thread, starting probe runs one after another
    (`runs_each` per slot) on the instances in turn, each waited for to its end."""
    async def slot(i: int) -> list[dict[str, Any]]:
        via, out = backends[i % len(backends)], []
        for _ in range(runs_each):
            started = await via.start_run(user.access, threads[i]["id"], agent=PROBE, steps=2,
                                          step_delay_ms=step_delay_ms)
            out.append(await via.settled(user.access, started["id"], within_s))
        return out

    t0 = time.perf_counter()
    done = await asyncio.gather(*(slot(i) for i in range(concurrency)))
    return Level(len(backends), concurrency, [r for d in done for r in d], time.perf_counter() - t0)


# -- a fleet of sockets following runs ---------------------------------------------------------

@dataclass
class Follower:
    sock: Socket
    user: User
    thread_id: str
    arrivals: list[tuple[dict[str, Any], float]] = field(default_factory=list)


async def fleet(ck: Check, auth: AsyncAuth, backends: tuple[AsyncBackend, AsyncBackend], users: int,
                per_user: int, env: Env) -> list[Follower]:
    """`users` users with a thread each and `per_user` sockets each, alternately on the two
    instances, every socket following its user's thread."""
    made = await gather_bounded(env.load.max_concurrency, [lambda: auth.new_user(ck) for _ in range(users)])
    threads = await gather_bounded(env.load.max_concurrency,
                                   [lambda u=u: backends[0].new_thread(ck, u) for u in made])

    async def follower(i: int) -> Follower:
        user, thread = made[i // per_user], threads[i // per_user]
        sock = await backends[i % 2].subscribed_socket(ck, user, thread["id"])
        return Follower(sock, user, thread["id"])

    opening = gather_bounded(env.load.max_concurrency, [lambda i=i: follower(i) for i in range(users * per_user)])
    return await asyncio.wait_for(opening, env.load.max_duration_s)


async def record_until_end(f: Follower, run_id: str, within_s: float) -> None:
    """Read `f`'s socket, stamping each message's arrival, until the run's end arrives."""
    deadline = time.monotonic() + within_s
    while True:
        msg = await f.sock.next(max(0.1, deadline - time.monotonic()))
        f.arrivals.append((msg, time.time()))
        if msg["type"] in RUN_END and msg["run_id"] == run_id:
            return


def delivery_ms(arrivals: Sequence[tuple[dict[str, Any], float]], run_ids: set[str]) -> list[float]:
    """From each event's creation (its envelope timestamp) to its arrival, in ms."""
    return [(at - iso_epoch(m["timestamp"])) * 1000 for m, at in arrivals if m["run_id"] in run_ids]


# -- fixtures a section's checks share -----------------------------------------------------------

async def locust_journey(scope: Check, env: Env, auth: AsyncAuth, journey: str, users: int, requests: int,
                         host: str, **plan: Any) -> tuple[list[Credential], LoadResult]:
    """`users` new users and one Locust run of `journey` by them, within the env's bounds: its
    workers (`load.workers`), at most `requests` requests and `load.max_duration_s` seconds."""
    creds = await credentials(scope, auth, users, env)
    spec = LoadPlan(journey, users=users, requests=requests, run_time_s=env.load.max_duration_s, host=host,  # type: ignore[arg-type]
                    workers=env.load.workers, **plan)
    return creds, await locust(env, scope, spec, creds)


async def second_auth_url(scope: Check, env: Env, auth: AsyncAuth) -> str:
    """A second auth process (same database, Redis and keys, so the same limiters' counters), for
    the scope's lifetime: limits must hold across instances, not per instance."""
    issuer = (await auth.config())["issuer"]
    inst = await faults.started_instance(env, "auth", {"AUTH_ISSUER": issuer}, scope)
    ready = await inst.wait_answering("/health/ready", env.timeouts.startup_s)
    assert ready.status_code == 200, f"second auth not ready: {ready.status_code} {inst.output[-300:]}"
    return inst.url


def admitted(result: LoadResult, user_ids: set[str]) -> Counter[int]:
    """Login answers by status for the simulated users logging in as `user_ids`."""
    out: Counter[int] = Counter()
    for u in result.per_user:
        if u["user_id"] in user_ids:
            for key, n in u["statuses"].items():
                out[int(key.rpartition(" ")[2])] += n
    return out


def from_addresses(cred: Credential, count: int) -> list[Credential]:
    """`count` simulated users logging in as one account, each from its own address (so only the
    per-email limit applies to them)."""
    return [replace(cred, ip=random_ip()) for _ in range(count)]


def from_one_address(creds: Sequence[Credential]) -> list[Credential]:
    """The accounts all logging in from one address (so the per-IP limit applies to their sum)."""
    ip = random_ip()
    return [replace(c, ip=ip) for c in creds]


def forget_login_limits_when_done(ck: Check, env: Env, emails: Sequence[str]) -> None:
    """When the check ends, before its users are deleted: drop the per-email login windows the
    check drove to their limit. Deleting an account re-checks its password as a login attempt
    (app/auth/ratelimit.py), so a user at its limit could not be deleted until the window ends."""
    r = redis.for_check(env, ck)

    async def forget() -> None:
        await r.delete(*(f"auth:rl:email:{hashlib.sha256(e.strip().lower().encode()).hexdigest()[:32]}" for e in emails))

    ck.defer(forget)
