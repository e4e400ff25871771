"""Deleting a user, against the real services: auth deletes the account (the owner with a
password or a fresh login, or an admin), the backend deletes everything of theirs from the
event on the Redis stream (also when it was down at the time, also when another instance
took the event and died), the bill stays anonymised, and nobody else's data is touched."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import clickhouse_connect
import httpx
import pytest
import redis as sync_redis
from auth_support import (PASSWORD, AuthStack, backend_env, bearer,
                          register_and_login, spawn_backend)
from test_audit_oidc import audit_rows, oidc_login

from app.common.user_deletions import GROUP, STREAM
from workbook.stack.backend import BackendService
from workbook.stack.manager import Stack
from workbook.stack.state import stack_secret

COST_REQUEST = "How can I cut the cost of my workload requests over the last 7 days?"
SETTLE_S = 20.0


def wait_for(probe: Callable[[], Any], until: Callable[[Any], bool], what: str, within_s: float = SETTLE_S) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = probe()
        if until(value):
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {within_s} s (last: {value})"
        time.sleep(0.1)


def sql(stack: Stack, database: str, query: str, *args: Any) -> list[asyncpg.Record]:
    url = stack.state().services["postgres"].url.rsplit("/", 1)[0] + f"/{database}"

    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, password=stack_secret(stack.paths, "postgres"))
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(fetch())


def clickhouse(stack: Stack) -> Any:
    return clickhouse_connect.get_client(dsn=stack.state().services["clickhouse"].url, username="default",
                                         password=stack_secret(stack.paths, "clickhouse"),
                                         autogenerate_session_id=False)


def redis_of(stack: Stack) -> sync_redis.Redis:
    return sync_redis.Redis.from_url(stack.state().services["redis"].url, password=stack_secret(stack.paths, "redis"),
                                     decode_responses=True)


# What the backend and ClickHouse hold of a user, per place (the bill counted apart).
BACKEND_OWNED = {"threads": "owner_id", "messages": "owner_id", "runs": "owner_id", "user_plans": "user_id",
                 "usage_daily": "user_id", "usage_records": "user_id"}
CLICKHOUSE_OWNED = {"workload_events": "user_id", "corpus": "owner_id", "usage_events": "user_id"}


def holdings(stack: Stack, user_id: str) -> dict[str, int]:
    counts = {t: sql(stack, "backend", f"SELECT count(*) AS n FROM {t} WHERE {c} = $1::uuid", user_id)[0]["n"]
              for t, c in BACKEND_OWNED.items()}
    ch = clickhouse(stack)
    try:
        for table, column in CLICKHOUSE_OWNED.items():
            counts[f"ch.{table}"] = ch.command(f"SELECT count() FROM {table} WHERE {column} = {{u:String}}",
                                               parameters={"u": user_id})
    finally:
        ch.close()
    return counts


def user_with_data(client: httpx.Client, api: httpx.Client, stack: Stack) -> dict:
    """A user with a thread, a finished model run (messages, steps, usage in PostgreSQL and
    ClickHouse), a plan row, workload events and a corpus entry."""
    user = register_and_login(client)
    h = bearer(user["access_token"])
    thread = api.post("/api/threads", json={"title": "to be deleted"}, headers=h).json()
    run = api.post(f"/api/threads/{thread['id']}/runs", json={"input": COST_REQUEST}, headers=h)
    assert run.status_code == 202, run.text
    wait_for(lambda: api.get(f"/api/runs/{run.json()['id']}", headers=h).json()["status"],
             lambda s: s in ("completed", "failed", "awaiting_input"), "the run ending")
    sql(stack, "backend", "INSERT INTO user_plans (user_id, plan) VALUES ($1::uuid, 'mid')", user["id"])
    ch = clickhouse(stack)
    try:
        ch.command("INSERT INTO workload_events SELECT {u:String}, now(), 'chat', 'gpt-4o', 1, 10, 10, 100",
                   parameters={"u": user["id"]})
        ch.command("INSERT INTO corpus SELECT generateUUIDv4(), {u:String}, 'title', 'content', ['t'], now64(3)",
                   parameters={"u": user["id"]})
    finally:
        ch.close()
    held = holdings(stack, user["id"])
    assert all(held.values()), f"the user should hold something everywhere: {held}"
    return {**user, "thread_id": thread["id"], "held": held}


def delete_me(client: httpx.Client, user: dict, password: str | None = PASSWORD) -> httpx.Response:
    return client.request("DELETE", "/auth/users/me", headers=bearer(user["access_token"]),
                          json={"password": password} if password is not None else None)


def gone_everywhere(stack: Stack, user_id: str) -> dict[str, int]:
    return wait_for(lambda: holdings(stack, user_id), lambda h: not any(h.values()), f"user {user_id}'s data deleted")


def test_deleting_oneself_takes_everything_but_the_anonymised_bill(client: httpx.Client, api: httpx.Client,
                                                                    stack: Stack, auth_stack: AuthStack) -> None:
    user, other = user_with_data(client, api, stack), user_with_data(client, api, stack)
    bill = sql(stack, "backend", "SELECT count(*) AS n, sum(cost_usd) AS cost FROM usage_records "
                                 "WHERE user_id = $1::uuid", user["id"])[0]
    replay = f"ws:thread_replay:{user['thread_id']}"
    assert redis_of(stack).exists(replay), "the run's events should be kept for replay"

    refused = delete_me(client, user, password=None)
    assert refused.status_code == 401 and refused.json()["error"] == "reauthentication_required", refused.text
    wrong = delete_me(client, user, password="not the password")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials", wrong.text
    done = delete_me(client, user)
    assert done.status_code == 202 and done.json() == {"id": user["id"], "account": "deleted",
                                                       "platform_data": "deletion queued"}, done.text

    for call in (client.get("/auth/me", headers=bearer(user["access_token"])),
                 api.get("/api/threads", headers=bearer(user["access_token"])),
                 client.post("/auth/refresh", json={"refresh_token": user["refresh_token"]}),
                 client.post("/auth/login", json={"email": user["email"], "password": PASSWORD})):
        assert call.status_code == 401, call.text
    assert not sql(stack, "auth", "SELECT 1 FROM users WHERE id = $1::uuid", user["id"])
    assert not sql(stack, "auth", "SELECT 1 FROM refresh_families WHERE user_id = $1::uuid", user["id"])
    assert not redis_of(stack).exists(f"auth:user_sessions:{user['id']}")
    gone_everywhere(stack, user["id"])
    assert not redis_of(stack).exists(replay)
    kept = sql(stack, "backend", "SELECT user_id::text AS tombstone, count(*) AS n, sum(cost_usd) AS cost, "
                                 "bool_and(anonymised_at IS NOT NULL) AS marked FROM usage_records "
                                 "WHERE anonymised_at IS NOT NULL GROUP BY user_id")
    mine = [r for r in kept if (r["n"], r["cost"]) == (bill["n"], bill["cost"])]
    assert len(mine) == 1 and mine[0]["marked"] and mine[0]["tombstone"] != user["id"], (bill, kept)
    ch = clickhouse(stack)
    try:
        moved = ch.command("SELECT count() FROM usage_events WHERE user_id = {t:String}",
                           parameters={"t": mine[0]["tombstone"]})
    finally:
        ch.close()
    assert moved == user["held"]["ch.usage_events"], "the usage events should follow the bill to the tombstone"

    assert holdings(stack, other["id"]) == other["held"], "another user's data changed"
    assert client.get("/auth/me", headers=bearer(other["access_token"])).status_code == 200
    event = [json.loads(r["detail"]) for r in audit_rows(auth_stack, user["id"]) if r["event"] == "user_deleted"]
    assert event == [{"by": user["id"], "how": "self", "sessions_ended": 1}], event


def test_an_account_without_password_needs_a_fresh_login(client: httpx.Client, stack: Stack) -> None:
    login = oidc_login(client, f"oidc-{uuid.uuid4().hex[:10]}@example.com")
    assert login.status_code == 200, login.text
    body = login.json()
    reauth = client.get("/auth/config").json()["reauth_max_age_s"]
    # The session was opened longer ago than the re-authentication window allows.
    redis_of(stack).hset(f"auth:session:{body['session_id']}", "created_at", time.time() - reauth - 1)
    stale = client.request("DELETE", "/auth/users/me", headers=bearer(body["access_token"]))
    assert stale.status_code == 401 and stale.json()["error"] == "reauthentication_required", stale.text
    fresh = oidc_login(client, body["user"]["email"]).json()
    assert fresh["user"]["id"] == body["user"]["id"]
    done = client.request("DELETE", "/auth/users/me", headers=bearer(fresh["access_token"]))
    assert done.status_code == 202, done.text
    assert not sql(stack, "auth", "SELECT 1 FROM oidc_identities WHERE user_id = $1::uuid", body["user"]["id"])


def test_admins_delete_others_and_only_an_owner_deletes_an_owner(client: httpx.Client, stack: Stack,
                                                                 auth_stack: AuthStack) -> None:
    def with_role(role: str) -> dict:
        user = register_and_login(client)
        sql(stack, "auth", "UPDATE users SET role = $1 WHERE id = $2::uuid", role, user["id"])
        again = client.post("/auth/refresh", json={"refresh_token": user["refresh_token"]}).json()
        return {**user, **again}

    member, victim, admin, owner, other_owner = (with_role(r) for r in ("member", "member", "admin", "owner", "owner"))

    def delete(actor: dict, target: dict) -> httpx.Response:
        return client.delete(f"/auth/admin/users/{target['id']}", headers=bearer(actor["access_token"]))

    refused = delete(member, victim)
    assert refused.status_code == 403 and "users:delete" in refused.json()["detail"], refused.text
    assert delete(admin, other_owner).status_code == 403
    assert delete(admin, victim).status_code == 202
    assert delete(admin, victim).status_code == 404
    assert delete(owner, other_owner).status_code == 202
    assert client.get("/auth/me", headers=bearer(member["access_token"])).status_code == 200
    event = [json.loads(r["detail"]) for r in audit_rows(auth_stack, victim["id"]) if r["event"] == "user_deleted"]
    assert event == [{"by": admin["id"], "how": "admin", "sessions_ended": 1}], event


def test_runs_going_at_deletion_are_stopped_and_leave_nothing(client: httpx.Client, api: httpx.Client,
                                                              stack: Stack) -> None:
    user = register_and_login(client)
    h = bearer(user["access_token"])
    thread = api.post("/api/threads", json={"title": "long"}, headers=h).json()
    run = api.post(f"/api/threads/{thread['id']}/runs", headers=h,
                   json={"agent": "probe", "scenario": "long", "steps": 100, "step_delay_ms": 100}).json()
    wait_for(lambda: api.get(f"/api/runs/{run['id']}", headers=h).json()["status"], lambda s: s == "running",
             "the run running")
    assert delete_me(client, user).status_code == 202
    gone_everywhere(stack, user["id"])
    time.sleep(1)  # the run's task had 10 s to go: nothing of it may come back
    assert not any(holdings(stack, user["id"]).values())
    assert not sql(stack, "backend", "SELECT 1 FROM run_steps WHERE run_id = $1::uuid", run["id"])


@contextmanager
def backends_down(stack: Stack) -> Iterator[None]:
    """Every backend instance of the stack killed (other tests' modules may have started a
    second one: it consumes deletions too), and started again afterwards."""
    every = Stack(root=stack.paths.root, services=[*stack.services, BackendService(2)])
    running = [name for name, svc in every.state().services.items()
               if name.startswith("backend") and svc.process() is not None]
    for name in running:
        every.kill(name)
    # A killed instance's blocking read stays in Redis until Redis sees its socket closed; an
    # entry appended before then would still be delivered to the dead consumer.
    redis = redis_of(stack)
    deadline = time.monotonic() + 5
    while redis.info("clients")["blocked_clients"] and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield
    finally:
        for name in running:
            every.restart(name)


def test_a_backend_that_was_down_catches_up(client: httpx.Client, api: httpx.Client, stack: Stack) -> None:
    user = user_with_data(client, api, stack)
    with backends_down(stack):
        assert delete_me(client, user).status_code == 202
        time.sleep(1)  # nobody consumes meanwhile: the data must still be there
        assert holdings(stack, user["id"]) == user["held"]
    gone_everywhere(stack, user["id"])


def test_an_event_held_by_a_dead_instance_is_taken_over(client: httpx.Client, api: httpx.Client, stack: Stack,
                                                        tmp_path: Any) -> None:
    user = user_with_data(client, api, stack)
    r = redis_of(stack)
    with backends_down(stack):
        assert delete_me(client, user).status_code == 202
        # An instance read the entry and died before deleting anything: it stays pending there.
        taken = r.xreadgroup(GROUP, "instance-that-died", {STREAM: ">"}, count=100)
        assert any(f["user_id"] == user["id"] for _, entries in taken for _, f in entries), taken
        env = backend_env(stack, BACKEND_DELETION_CLAIM_IDLE_S="0.5")
        with spawn_backend(env, tmp_path / "backend.log"):
            gone_everywhere(stack, user["id"])
    pending = r.xpending_range(STREAM, GROUP, "-", "+", 100)
    assert not [p for p in pending if p["consumer"] == "instance-that-died"], pending


def test_migration_0004_upgrades_and_downgrades(stack: Stack) -> None:
    from app.backend import migrate
    from app.common.settings import BackendSettings

    db = "backend_migration_check"
    sql(stack, "postgres", f"DROP DATABASE IF EXISTS {db}")
    sql(stack, "postgres", f"CREATE DATABASE {db}")
    url = stack.state().services["postgres"].url.rsplit("/", 1)[0] + f"/{db}"
    settings = BackendSettings(database_url=url, database_password=stack_secret(stack.paths, "postgres"))
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'usage_records'"
    migrate.upgrade(settings)
    assert "anonymised_at" in {r["column_name"] for r in sql(stack, db, columns)}
    migrate.downgrade(settings, "0003")
    assert "anonymised_at" not in {r["column_name"] for r in sql(stack, db, columns)}
    migrate.upgrade(settings)
    assert "anonymised_at" in {r["column_name"] for r in sql(stack, db, columns)}
    sql(stack, "postgres", f"DROP DATABASE {db}")
