"""Rate limits, lockout, dependency failures, startup refusal and migrations, each on its own process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import httpx
import redis
from auth_support import PASSWORD, AuthStack, new_email, random_ip, run_cli, spawn_auth
from sqlalchemy.engine import make_url

from app.auth.ratelimit import email_key
from app.common.ratelimit import FixedWindow
from app.common.redis_client import make_redis

from workbook.stack.manager import free_port


def login(url: str, email: str, password: str, ip: str) -> httpx.Response:
    return httpx.post(f"{url}/auth/login", json={"email": email, "password": password},
                      headers={"X-Forwarded-For": ip}, timeout=30)


def test_rate_limits_per_email_and_per_ip_are_independent(auth_stack: AuthStack, tmp_path: Path) -> None:
    env = auth_stack.env(AUTH_LOGIN_RATE_EMAIL="3", AUTH_LOGIN_RATE_IP="5", AUTH_LOGIN_RATE_WINDOW_S="30",
                         AUTH_LOCKOUT_THRESHOLD="100")
    with spawn_auth(env, tmp_path / "auth.log") as url:
        ip, email = random_ip(), new_email("rl")
        assert [login(url, email, "wrong", ip).status_code for _ in range(3)] == [401] * 3
        limited = login(url, email, "wrong", ip)
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        assert 0 < int(limited.headers["retry-after"]) <= 30
        # The same email from another IP is still limited (per email) ...
        assert login(url, email, "wrong", random_ip()).status_code == 429
        # ... and the first IP's budget (5: three counted so far) runs out on other emails independently.
        assert [login(url, new_email("rl"), "wrong", ip).status_code for _ in range(3)] == [401, 401, 429]
        assert login(url, new_email("rl"), "wrong", random_ip()).status_code == 401
        r = redis.Redis.from_url(auth_stack.service_url("redis"), password=auth_stack.secret("redis"))
        for key in (f"auth:rl:ip:{ip}", f"auth:rl:email:{email_key(email)}"):
            assert 0 < r.ttl(key) <= 30, key


def test_fixed_window_counts_each_hit_once_across_clients(auth_stack: AuthStack) -> None:
    """The counter every limit is made of: 200 hits at once from four clients (four processes'
    pools) are numbered 1..200 with none twice, and the key carries the window as its TTL."""
    async def hits() -> tuple[list[int], list[int], int]:
        clients = [make_redis(auth_stack.service_url("redis"), auth_stack.secret("redis"), 5.0, name="test")
                   for _ in range(4)]
        key = f"test:rl:{new_email('fw')}"
        try:
            got = await asyncio.gather(*[FixedWindow(clients[i % 4]).hit(key, 7) for i in range(200)])
            return [w.count for w in got], [w.left_s for w in got], await clients[0].pttl(key)
        finally:
            await clients[0].delete(key)
            await asyncio.gather(*[c.aclose() for c in clients])

    counts, left, pttl = asyncio.run(hits())
    assert sorted(counts) == list(range(1, 201))
    assert set(left) <= set(range(1, 8)) and 0 < pttl <= 7000, (set(left), pttl)


def test_lockout_after_failures_expires(auth_stack: AuthStack, tmp_path: Path) -> None:
    env = auth_stack.env(AUTH_LOCKOUT_THRESHOLD="3", AUTH_LOCKOUT_S="2")
    with spawn_auth(env, tmp_path / "auth.log") as url:
        email, ip = new_email("lock"), random_ip()
        assert httpx.post(f"{url}/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        assert [login(url, email, "wrong", ip).status_code for _ in range(3)] == [401] * 3
        locked = login(url, email, PASSWORD, ip)
        assert locked.status_code == 429 and locked.json()["error"] == "locked_out"
        assert 1 <= int(locked.headers["retry-after"]) <= 2
        time.sleep(2.2)
        assert login(url, email, PASSWORD, ip).status_code == 200


def test_redis_down_gives_503_naming_it(auth_stack: AuthStack, tmp_path: Path) -> None:
    # Without Sentinels, which would name the stack's live primary.
    env = auth_stack.env(AUTH_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", AUTH_REDIS_SENTINELS="[]",
                         AUTH_DEPENDENCY_TIMEOUT_S="1")
    with spawn_auth(env, tmp_path / "auth.log") as url:
        ready = httpx.get(f"{url}/health/ready", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("down")
        assert ready.json()["checks"]["postgres"] == "ok"
        r = httpx.post(f"{url}/auth/login", json={"email": new_email(), "password": "x"}, timeout=30)
        assert r.status_code == 503 and r.json()["dependency"] == "redis"


def test_outside_local_weak_config_is_refused_before_binding(auth_stack: AuthStack) -> None:
    port = free_port()
    env = auth_stack.env(AUTH_ENV="staging", AUTH_REDIS_PASSWORD="changeme", AUTH_ISSUER="http://x")
    started = time.monotonic()
    r = run_cli(env, "--port", str(port), timeout=30)
    assert r.returncode == 2 and time.monotonic() - started < 15
    for name in ("AUTH_GENERATE_KEYS", "AUTH_REDIS_PASSWORD is weak", "AUTH_ISSUER must be an https URL"):
        assert name in r.stderr, r.stderr
    for secret in ("changeme", auth_stack.secret("postgres"), auth_stack.secret("auth-audit-db")):
        assert secret not in r.stderr + r.stdout
    assert r.returncode == 2 and "AUTH_DATABASE_PASSWORD" not in r.stderr  # the stack's one is strong


def test_invalid_values_and_unreachable_database_exit_nonzero(auth_stack: AuthStack) -> None:
    bad = run_cli(auth_stack.env(AUTH_ACCESS_TTL_S="-5"), "--port", str(free_port()))
    assert bad.returncode == 2 and "AUTH_ACCESS_TTL_S" in bad.stderr
    url = make_url(auth_stack.env()["AUTH_DATABASE_URL"]).set(port=free_port())
    down = run_cli(auth_stack.env(AUTH_DATABASE_URL=url.render_as_string()), "--port", str(free_port()))
    assert down.returncode == 3 and "AUTH_DATABASE_URL" in down.stderr, down.stderr


def test_migrations_upgrade_and_downgrade(auth_stack: AuthStack) -> None:
    env = auth_stack.env()
    admin_url = auth_stack.service_url("postgres")
    pw = auth_stack.secret("postgres")
    db = "auth_migration_check"

    async def sql(query: str, database: str = "postgres") -> list:
        conn = await asyncpg.connect(admin_url.rsplit("/", 1)[0] + f"/{database}", password=pw)
        try:
            return await conn.fetch(query)
        finally:
            await conn.close()

    asyncio.run(sql(f"DROP DATABASE IF EXISTS {db}"))
    asyncio.run(sql(f"CREATE DATABASE {db}"))
    env["AUTH_DATABASE_URL"] = env["AUTH_DATABASE_URL"].rsplit("/", 1)[0] + f"/{db}"
    tables = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    assert run_cli(env, "migrate").returncode == 0
    assert {r[0] for r in asyncio.run(sql(tables, db))} >= {
        "users", "refresh_families", "refresh_tokens", "audit_log", "oidc_identities", "service_clients"}
    down = run_cli(env, "migrate", "--downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert [r[0] for r in asyncio.run(sql(tables, db))] == ["auth_alembic_version"]
    assert run_cli(env, "migrate").returncode == 0
    assert "users" in {r[0] for r in asyncio.run(sql(tables, db))}
