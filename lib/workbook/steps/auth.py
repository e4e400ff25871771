"""Steps of 01_auth: what its checks arrange (a token from a second auth process, a tampered OIDC
login, an open breaker) and read back (audit rows, limiter keys, refused writes, the limits the
service really enforces), so each check cell says what it holds and not how it gets there.

Every step takes the clients it needs; none keeps state between calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import httpx
import jwt
import redis.asyncio as aioredis
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import VerifyMismatchError
from cryptography.hazmat.primitives.asymmetric import ec

from workbook import faults
from workbook.clients.platform import random_ip, rejected, state_key, unique_email
from workbook.clients.platform.auth import AsyncAuth
from workbook.clients.platform.auth import auth as auth_client
from workbook.clients.platform.backend import AsyncBackend
from workbook.clients.platform.common import User
from workbook.clients.platform.oidc import OidcFlow
from workbook.clients.scope import Check
from workbook.concurrency import gather_bounded
from workbook.faults import Exited, Instance
from workbook.params import AuthExpect, Env
from workbook.polling import poll


# -- answers -----------------------------------------------------------------------------------

def refused(resp: httpx.Response) -> dict[str, Any]:
    """The body of a 401 as both services promise it: a Bearer challenge, and the JSON error
    shape whose request id is the response header's (so a refusal can be traced in the logs)."""
    body = rejected(resp, 401)
    assert resp.headers.get("www-authenticate", "").startswith("Bearer"), dict(resp.headers)
    assert {"error", "detail", "request_id"} <= set(body), body
    assert body["request_id"] == resp.headers.get("x-request-id"), (body["request_id"], resp.headers.get("x-request-id"))
    return body


def refused_naming(exited: Exited, names: Iterable[str], within_s: float, code: int = 2) -> None:
    """A second instance refused to start the way startup validation promises: exit `code`
    within `within_s`, naming exactly the settings in `names` (so each refusal is shown to be
    caused by the one thing broken, not by something else the configuration lacks)."""
    want = set(names)
    got = f"exit {exited.code} after {exited.seconds:.1f}s (bound {within_s:.0f}s) naming {sorted(exited.problems)}"
    assert exited.code == code and exited.problems == want and exited.seconds <= within_s, \
        f"want exit {code} naming {sorted(want)}; got {got}: {exited.output.strip()[-300:]!r}"


def field_names(data: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every key of a nested JSON object, dotted (`lockout.duration_s`): what a secret-looking
    field name would hide under."""
    for key, value in data.items():
        yield f"{prefix}{key}"
        if isinstance(value, dict):
            yield from field_names(value, f"{prefix}{key}.")


async def chunked_body(chunks: int, size: int) -> AsyncIterator[bytes]:
    """A request body sent without Content-Length: a size limit must count the bytes that
    arrive, not trust a header."""
    for _ in range(chunks):
        yield b"x" * size


# -- login limiter and audit rows --------------------------------------------------------------

def email_key(email: str) -> str:
    """The limiter's Redis key part for an email: hashed, so Redis never holds the address."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def limiter_keys(emails: Iterable[str] = (), ips: Iterable[str] = ()) -> list[str]:
    """Every limiter key these emails and client IPs may have made (rate windows, failure
    counts, lockouts): what a check deletes so its attempts never count against a later one."""
    keys = []
    for email in emails:
        h = email_key(email)
        keys += [f"auth:rl:email:{h}", f"auth:failures:{h}", f"auth:lockout:{h}"]
    return keys + [f"auth:rl:ip:{ip}" for ip in ips]


async def audit_rows(conn: asyncpg.Connection, user_id: str | None = None, email: str | None = None,
                     event: str | None = None) -> list[dict[str, Any]]:
    """Audit rows about a user (by id, or by email for attempts on unknown accounts), oldest
    first, with `detail` decoded."""
    rows = await conn.fetch(
        "SELECT event, user_id::text AS user_id, email, ip, user_agent, detail::text AS detail, written_by "
        "FROM audit_log WHERE (user_id::text = $1 OR lower(email) = lower($2)) AND ($3::text IS NULL OR event = $3) "
        "ORDER BY id", user_id, email or "", event)
    return [dict(r, detail=json.loads(r["detail"])) for r in rows]


async def lock_out(auth: AsyncAuth, user: User, failures: int) -> httpx.Response:
    """`failures` wrong passwords for `user`, then the right one: the answer to that last
    attempt (a 429 `locked_out` when `failures` reaches the lockout threshold)."""
    for _ in range(failures):
        rejected(await auth.login_raw(user.email, "wrong-password-1", user.ip))
    return await auth.login_raw(user.email, user.password, user.ip)


# -- database refusals -------------------------------------------------------------------------

def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def refused_write(conn: asyncpg.Connection, sql: str, *args: Any, role: str | None = None) -> asyncpg.PostgresError:
    """Try a write the database must refuse, as `role` (SET LOCAL ROLE) or as the connection's
    own role, in a transaction rolled back either way; return the database's error. Fails the
    check if the write went through: a constraint or privilege only counts if it refuses."""
    tx = conn.transaction()
    await tx.start()
    try:
        if role is not None:
            await conn.execute(f"SET LOCAL ROLE {_ident(role)}")
        try:
            status = await conn.execute(sql, *args)
        except asyncpg.PostgresError as e:
            return e
        raise AssertionError(f"the database accepted {sql.split()[0]} as {role or 'this connection'}: {status}")
    finally:
        await tx.rollback()


# -- tokens ------------------------------------------------------------------------------------

async def token_from_instance(env: Env, user: User, overrides: dict[str, str | None]) -> tuple[str, bool]:
    """An access token for `user` from a second auth process (same keys, database and Redis)
    started with `overrides` (another issuer or audience), and whether that instance
    accepts the token itself: real signatures on bad claims, which the workbook cannot make."""
    async with faults.second_instance(env, "auth", overrides) as inst:
        ready = await inst.wait_answering("/health/ready", env.timeouts.startup_s)
        assert ready.status_code == 200, f"instance not ready: {ready.status_code} {inst.output[-300:]}"
        async with auth_client(env, url=inst.url) as other:
            tokens = await other.login(user)
            own = await other.me_raw(tokens.access)
    return tokens.access, own.status_code == 200


async def short_lived_issuer(env: Env, issuer: str, access_ttl_s: int, scope: Check) -> Instance:
    """A second auth process (same keys, database and Redis, the stack's issuer) whose access
    tokens live `access_ttl_s`, started once for the notebook's expiry checks (`wb.shared`) and
    stopped when `scope` ends; returned once it is ready. A token of the stack's own lifetime
    would take minutes to expire."""
    inst = await faults.started_instance(env, "auth", {"AUTH_ISSUER": issuer, "AUTH_ACCESS_TTL_S": str(access_ttl_s)},
                                         scope)
    ready = await inst.wait_answering("/health/ready", env.timeouts.startup_s)
    assert ready.status_code == 200, f"short-lived issuer not ready: {ready.status_code} {inst.output[-300:]}"
    return inst


async def login_at(env: Env, url: str, user: User) -> str:
    """An access token for `user` from the auth instance at `url`."""
    async with auth_client(env, url=url) as other:
        return (await other.login(user)).access


def stranger_token(user: User) -> str:
    """The user's real claims signed by a key auth never published, under a new kid each time:
    a verifier must ask auth's JWKS about every one of them (one call to auth per request)."""
    claims = jwt.decode(user.access, options={"verify_signature": False})
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": f"stranger-{uuid.uuid4().hex}"})


async def rotate_signing_key(auth: AsyncAuth, owner: User, within_s: float) -> tuple[str, str]:
    """Rotate in a new signing key as `owner`; return its kid and the first token it signed.
    The key must be published at once yet sign only from its `signs_from` (so verifiers know it
    before the first token arrives); this waits, polling auth's key list, until it signs."""
    rotated = await auth.rotate_key(owner.access)
    assert rotated["kid"] in {k["kid"] for k in (await auth.jwks())["keys"]}, "new key not published at once"
    early = (await auth.login(owner)).access
    assert jwt.get_unverified_header(early)["kid"] == rotated["active"] != rotated["kid"], "signed before signs_from"
    await poll(lambda: auth.keys(owner.access), until=lambda keys: keys["active"] == rotated["kid"],
               within_s=max(0.0, rotated["signs_from"] - time.time()) + within_s, every_s=0.1,
               what=f"key {rotated['kid']} active")
    assert time.time() >= rotated["signs_from"], "the key became active before its signs_from"
    return rotated["kid"], (await auth.login(owner)).access


# -- OIDC --------------------------------------------------------------------------------------

async def callback_with_tampered_login(ck: Check, oidc: OidcFlow, redis: aioredis.Redis, sub: str, ip: str,
                                       **changes: str) -> httpx.Response:
    """`sub`'s OIDC login with what auth stored for it in Redis (`verifier`, `nonce`,
    `redirect_uri`) changed by `changes` after the provider's consent: what auth then sends
    the provider, or holds the ID token to, is no longer what the authorization request
    carried. Returns auth's answer to the genuine callback; a session it opens ends with the check."""
    start = await oidc.start(ip)
    key = state_key(start)
    ck.defer(redis.delete, key)
    callback = await oidc.consent(start, sub)
    stored = json.loads(await redis.get(key) or "null")
    assert stored is not None, "auth stored no login for its own authorization request"
    assert set(changes) <= set(stored), f"the stored login has no {sorted(set(changes) - set(stored))}"
    await redis.set(key, json.dumps({**stored, **changes}), keepttl=True)
    return await oidc.callback(ck, callback, ip)


# -- the backend's circuit breaker on auth ----------------------------------------------------

async def auth_breaker(backend: AsyncBackend) -> dict[str, Any]:
    """The backend's breaker on its calls to auth, as `/api/metrics/circuit_breakers` reports it."""
    return (await backend.breakers())["auth"]


async def _auth_readiness(backend: AsyncBackend) -> dict[str, Any]:
    return (await backend.ready_raw()).json()["checks"]["auth"]


async def backend_auth_clocks(backend: AsyncBackend) -> dict[str, Any]:
    """The backend's clocks on its calls to auth as it reports them (JWKS cache and refetch guard
    in `/health/ready`, the auth breaker in its metrics), keyed like `expect.backend`."""
    ready, breaker = await _auth_readiness(backend), await auth_breaker(backend)
    return {"jwks_ttl_s": ready["jwks_ttl_s"], "jwks_min_refresh_s": ready["jwks_min_refresh_s"],
            "auth_breaker": {"failure_threshold": breaker["failure_threshold"], "reset_s": breaker["reset_s"]}}


def _past_refetch_guard(auth: dict[str, Any]) -> bool:
    return auth["jwks_age_s"] is None or auth["jwks_age_s"] > auth["jwks_min_refresh_s"]


async def trip_auth_breaker(backend: AsyncBackend, user: User, within_s: float) -> list[int]:
    """With auth down: requests with stranger tokens until the backend's auth breaker opens;
    their statuses. First waits until the backend's JWKS is older than its refetch guard
    (`jwks_min_refresh_s`, read from its /health/ready), so that each of those requests makes
    exactly one call to auth and the breaker counts one failure per request."""
    await past_refetch_guard(backend, within_s)
    statuses: list[int] = []
    for _ in range((await auth_breaker(backend))["failure_threshold"] + 1):
        if (await auth_breaker(backend))["state"] == "open":
            break
        statuses.append((await backend.me_raw(stranger_token(user))).status_code)
    assert (await auth_breaker(backend))["state"] == "open", f"breaker still closed after {statuses}"
    return statuses


async def past_refetch_guard(backend: AsyncBackend, within_s: float) -> dict[str, Any]:
    """The backend's auth readiness once its cached JWKS is older than its refetch guard
    (`jwks_min_refresh_s`): from then on the next unknown kid makes it fetch the JWKS."""
    return await poll(lambda: _auth_readiness(backend), until=_past_refetch_guard, within_s=within_s, every_s=0.05,
                      what="the backend's JWKS older than its refetch guard")


@dataclass
class ForgedKidBurst:
    calls: int  # calls the backend made to auth meanwhile (its auth breaker counts each)
    seconds: float  # from before the first request to after the last
    statuses: list[int]


async def forged_kid_burst(backend: AsyncBackend, tokens: list[str]) -> ForgedKidBurst:
    """Send every token at once (each under a kid auth never published) and count the calls the
    backend made to auth meanwhile. Only exact if nothing else calls auth through this backend
    instance: the calling check holds auth alone."""
    before = (await auth_breaker(backend))["calls"]
    t0 = time.monotonic()
    answers = await asyncio.gather(*(backend.me_raw(t) for t in tokens))
    after = (await auth_breaker(backend))["calls"]
    return ForgedKidBurst(after - before, time.monotonic() - t0, [a.status_code for a in answers])


def fetches_allowed(seconds: float, guard_s: float) -> int:
    """JWKS fetches a refetch guard of `guard_s` (> 0) allows in `seconds`: one, then one per guard period."""
    assert guard_s > 0, f"refetch guard {guard_s} s: every unknown kid may make the backend call auth"
    return 1 + math.floor(seconds / guard_s)


async def breaker_state(backend: AsyncBackend, state: str, within_s: float) -> dict[str, Any]:
    """The auth breaker once it reports `state` (e.g. half_open after its reset time)."""
    return await poll(lambda: auth_breaker(backend), until=lambda b: b["state"] == state, within_s=within_s,
                      every_s=0.1, what=f"auth breaker {state}")


# -- many users at once ------------------------------------------------------------------------

@dataclass
class OwnView:
    identity: tuple[str, str]  # (id at the backend, email at auth)
    thread: dict[str, Any]


async def own_view(auth: AsyncAuth, backend: AsyncBackend, ck: Check, user: User) -> OwnView:
    """Who both services say `user` is, and a thread of their own (deleted with the check)."""
    identity = (await backend.me(user.access))["id"], (await auth.me(user.access))["email"]
    return OwnView(identity, await backend.new_thread(ck, user, user.email))


@dataclass
class NeighbourProbe:
    read: int  # status of reading the neighbour's thread
    rename: int  # status of renaming it
    listed: list[str]  # the thread ids the user's own listing shows


async def probe_neighbour(backend: AsyncBackend, user: User, theirs: dict[str, Any]) -> NeighbourProbe:
    """`user` reads and renames another user's thread, then lists their own threads."""
    read = (await backend.thread_raw(user.access, theirs["id"])).status_code
    rename = (await backend.rename_thread_raw(user.access, theirs["id"], "taken over")).status_code
    listed = [t["id"] for t in (await backend.threads(user.access))["threads"]]
    return NeighbourProbe(read, rename, listed)


async def thread_unchanged(backend: AsyncBackend, user: User, thread: dict[str, Any]) -> bool:
    """Whether `user`'s thread still has the title and update time it was created with."""
    now = (await backend.thread_raw(user.access, thread["id"])).json()
    return (now["title"], now["updated_at"]) == (thread["title"], thread["updated_at"])


# -- timing ------------------------------------------------------------------------------------

async def failed_login_ms(auth: AsyncAuth, email: str, ip: str) -> float:
    """The time (ms) of one login with a wrong password, which must be refused with 401."""
    t0 = time.perf_counter()
    resp = await auth.login_raw(email, "wrong-password-1", ip)
    elapsed = (time.perf_counter() - t0) * 1000
    assert resp.status_code == 401, resp.text
    return elapsed


async def _paired_gaps(auth: AsyncAuth, ck: Check, users: list[User], per_user: int) -> list[float]:
    # Which login of a pair goes first alternates, so neither side always meets a connection
    # just used or a cache just warmed.
    gaps: list[float] = []
    for user in users:
        for _ in range(per_user):
            stranger = unique_email(ck.ns)
            if len(gaps) % 2:
                unknown = await failed_login_ms(auth, stranger, user.ip)
                known = await failed_login_ms(auth, user.email, user.ip)
            else:
                known = await failed_login_ms(auth, user.email, user.ip)
                unknown = await failed_login_ms(auth, stranger, user.ip)
            gaps.append(known - unknown)
    return gaps


def median_interval(values: list[float]) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median (order statistics n/2 ± 0.98·√n)."""
    ordered, n = sorted(values), len(values)
    k = max(0, math.floor(n / 2 - 0.98 * math.sqrt(n)))
    return ordered[k], ordered[n - 1 - k]


async def login_time_gaps(auth: AsyncAuth, ck: Check, per_user: int, bound_ms: float, concurrency: int,
                          min_pairs: int = 48, max_pairs: int = 192) -> tuple[list[User], list[float]]:
    """Wrong-password login time minus unknown-email login time (ms), one pair right after the
    other from the same address: paired and interleaved, so load that drifts during the run hits
    both sides of each difference alike. Users are registered `per_user` pairs' worth at a time
    (each stays below the lockout). After `min_pairs`, pairs are added in batches until the
    median's 95% interval lies wholly inside or wholly outside ±`bound_ms`, up to `max_pairs`:
    a quiet machine decides at the minimum, a loaded one (jitter of tens of ms) takes more pairs
    instead of a verdict by chance. Returns the users and the differences."""
    users: list[User] = []
    gaps: list[float] = []
    batch = math.ceil(min_pairs / 2 / per_user)
    while len(gaps) < max_pairs:
        fresh = await gather_bounded(concurrency, [partial(auth.new_user, ck, login=False) for _ in range(batch)])
        users += fresh
        gaps += await _paired_gaps(auth, ck, fresh, per_user)
        if len(gaps) >= min_pairs:
            low, high = median_interval(gaps)
            if -bound_ms <= low <= high <= bound_ms or low > bound_ms or high < -bound_ms:
                break
    return users, gaps


def hash_verify_ms(stored_hash: str, samples: int = 11) -> float:
    """The median time (ms) of one argon2 verification of a wrong password against
    `stored_hash`, on this machine. The hash encodes the parameters the service hashes with
    (memory, iterations, lanes), so this is the cost the service pays per login attempt: the
    time an unknown email would save if the service skipped its dummy hash."""
    hasher = PasswordHasher()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        try:
            hasher.verify(stored_hash, "not-the-password")
        except VerifyMismatchError:
            pass
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# -- configuration: reported vs enforced -------------------------------------------------------

def dotted(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping flattened to dotted keys (`lockout.threshold`)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


async def _password_min_length(auth: AsyncAuth, ck: Check, n: int) -> int:
    # n when n - 1 characters are refused and n accepted; else the length that contradicts it.
    short = await auth.register_raw(unique_email(ck.ns), "x" * (n - 1), random_ip())
    if short.status_code == 201:
        return n - 1
    assert short.status_code == 422, f"a short password answered {short.status_code}"
    exact = await auth.register_raw(unique_email(ck.ns), "x" * n, random_ip())
    return n if exact.status_code == 201 else n + 1


async def _sessions_kept(auth: AsyncAuth, ck: Check, n: int) -> tuple[User, int, dict[str, Any]]:
    # n + 1 logins: the sessions listed are min(enforced maximum, n + 1).
    user = await auth.new_user(ck)
    for _ in range(n):
        await auth.login(user)
    claims = jwt.decode(user.access, options={"verify_signature": False})
    return user, len(await auth.sessions(user.access)), {**claims, "alg": jwt.get_unverified_header(user.access)["alg"]}


async def stored_hash_parameters(conn: asyncpg.Connection, user: User) -> dict[str, Any]:
    """The argon2 parameters of the password hash auth stored for `user` (`$argon2id$v=19$m=...,t=...,p=...`),
    keyed like `/auth/config`'s `password_hash`: the cost the service really pays, whatever it reports."""
    stored = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1::uuid", user.id)
    assert stored is not None, f"no password hash stored for {user.id}"
    p = extract_parameters(stored)
    return {"algorithm": f"argon2{p.type.name.lower()}", "time_cost": p.time_cost, "memory_kib": p.memory_cost,
            "parallelism": p.parallelism}


async def _failures_before_lockout(auth: AsyncAuth, redis: aioredis.Redis, ck: Check, n: int) -> int:
    # Up to n + 1 wrong passwords: how many were answered before the account was locked.
    user = await auth.new_user(ck, login=False)
    ck.defer(redis.delete, *limiter_keys([user.email], [user.ip]))
    for failures in range(n + 1):
        resp = await auth.login_raw(user.email, "wrong-password-1", user.ip)
        if resp.status_code == 429:
            assert resp.json()["error"] == "locked_out", resp.json()
            return failures
        assert resp.status_code == 401, f"wrong password answered {resp.status_code}"
    return n + 1


async def _logins_admitted_per_email(auth: AsyncAuth, redis: aioredis.Redis, ck: Check, n: int) -> int:
    # Up to n + 1 good logins, each from a new address so only the email's window counts.
    user = await auth.new_user(ck, login=False)
    ips = [random_ip() for _ in range(n + 1)]
    ck.defer(redis.delete, *limiter_keys([user.email], ips + [user.ip]))
    for admitted, ip in enumerate(ips):
        resp = await auth.login_raw(user.email, user.password, ip)
        if resp.status_code == 429:
            assert resp.json()["error"] == "rate_limited", resp.json()
            return admitted
        assert resp.status_code == 200, f"a good login answered {resp.status_code}"
    return n + 1


async def _oidc_login_offered(auth: AsyncAuth, redis: aioredis.Redis, ck: Check) -> bool:
    resp = await auth.get("/auth/oidc/login", ip=random_ip())
    if resp.status_code == 302:
        ck.defer(redis.delete, state_key(httpx.URL(resp.headers["location"])))
    return resp.status_code == 302


async def enforced_limits(auth: AsyncAuth, redis: aioredis.Redis, conn: asyncpg.Connection, ck: Check,
                          want: AuthExpect) -> dict[str, Any]:
    """What the service enforces, measured through its API, for the limits that are cheap to
    probe, keyed like `dotted(expect.auth)`. Each probe goes one step past the expected value,
    so a service that reports one number and enforces another shows a different value here:
    sessions kept after `session_max + 1` logins, failures answered before the lockout, good
    logins admitted per email, the password length at the edge, the claims a token carries,
    and the argon2 parameters of the hash stored for a password (read from auth's database).
    Limiter keys it made are deleted and its sessions ended with the check."""
    user, sessions, token = await _sessions_kept(auth, ck, want.session_max)
    hashed = await stored_hash_parameters(conn, user)
    return {
        **{f"password_hash.{k}": v for k, v in hashed.items()},
        "audience": token["aud"],
        "algorithms": [token["alg"]],
        "access_ttl_s": token["exp"] - token["iat"],
        "session_max": sessions,
        "login_rate.per_email": await _logins_admitted_per_email(auth, redis, ck, want.login_rate.per_email),
        "lockout.threshold": await _failures_before_lockout(auth, redis, ck, want.lockout.threshold),
        "password_min_length": await _password_min_length(auth, ck, want.password_min_length),
        "oidc_enabled": await _oidc_login_offered(auth, redis, ck),
    }
