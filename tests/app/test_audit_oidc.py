"""Audit rows and their protection; OIDC login against the real OIDC stand-in (standins.oidc)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
import pytest
from auth_support import PASSWORD, AuthStack, bearer, new_email, register_and_login


def audit_rows(stack: AuthStack, user_id: str) -> list[dict]:
    url = stack.env()["AUTH_DATABASE_URL"]

    async def fetch() -> list[dict]:
        conn = await asyncpg.connect(url, password=stack.secret("postgres"))
        try:
            rows = await conn.fetch("SELECT * FROM audit_log WHERE user_id = $1::uuid ORDER BY id", user_id)
            return [dict(r) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_each_auth_event_writes_one_row_without_secrets(client: httpx.Client, auth_stack: AuthStack) -> None:
    s = register_and_login(client, **{"User-Agent": "audit-check/1"})
    client.post("/auth/login", json={"email": s["email"], "password": "wrong password"})
    rotated = client.post("/auth/refresh", json={"refresh_token": s["refresh_token"]}).json()
    client.post("/auth/refresh", json={"refresh_token": s["refresh_token"]})  # reuse
    again = client.post("/auth/login", json={"email": s["email"], "password": PASSWORD}).json()
    client.post("/auth/logout", headers=bearer(again["access_token"]))
    rows = audit_rows(auth_stack, s["id"])
    assert [r["event"] for r in rows] == ["register", "login_success", "login_failure", "refresh",
                                          "refresh_reuse_detected", "login_success", "logout"]
    login_row = rows[1]
    assert login_row["user_agent"] == "audit-check/1" and login_row["ip"] == client.headers["x-forwarded-for"]
    assert login_row["email"] == s["email"] and login_row["at"] is not None
    dump = json.dumps([{k: str(v) for k, v in r.items()} for r in rows])
    for secret in (PASSWORD, "wrong password", s["access_token"], s["refresh_token"], rotated["refresh_token"]):
        assert secret not in dump


@pytest.mark.parametrize("who", ["audit_role", "service_role"])
def test_audit_rows_cannot_be_changed(auth_stack: AuthStack, who: str) -> None:
    env = auth_stack.env()
    user, pw = ("auth_audit", env["AUTH_AUDIT_DB_PASSWORD"]) if who == "audit_role" else (
        "postgres", auth_stack.secret("postgres"))
    url = env["AUTH_DATABASE_URL"].replace("postgres@", f"{user}@")

    async def attempt() -> list[str]:
        conn = await asyncpg.connect(url, password=pw)
        errors = []
        try:
            assert await conn.fetchval("SELECT count(*) FROM audit_log") > 0
            for stmt in ("UPDATE audit_log SET event = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
                try:
                    await conn.execute(stmt)
                    errors.append(f"{stmt}: allowed")
                except asyncpg.PostgresError as e:
                    errors.append(type(e).__name__ if who == "audit_role" else str(e))
        finally:
            await conn.close()
        return errors

    errors = asyncio.run(attempt())
    if who == "audit_role":
        assert errors == ["InsufficientPrivilegeError"] * 3
    else:
        assert all("append-only" in e for e in errors), errors


def oidc_login(c: httpx.Client, sub: str, action: str | None = None) -> httpx.Response:
    start = c.get("/auth/oidc/login")
    assert start.status_code == 302
    location = start.headers["location"]
    for needed in ("state=", "nonce=", "code_challenge=", "code_challenge_method=S256"):
        assert needed in location
    form = {"sub": sub} if action is None else {"sub": sub, "action": action}
    granted = httpx.post(location, data=form, timeout=30)
    assert granted.status_code == 302, granted.text
    return c.get(granted.headers["location"])


def test_oidc_first_login_creates_the_user_and_later_ones_link(client: httpx.Client) -> None:
    sub = new_email("oidc")
    first = oidc_login(client, sub)
    assert first.status_code == 200, first.text
    second = oidc_login(client, sub)
    assert second.status_code == 200
    assert first.json()["user"]["id"] == second.json()["user"]["id"]
    me = client.get("/auth/me", headers=bearer(second.json()["access_token"])).json()
    assert me["email"] == sub and me["role"] == "member"
    sessions = client.get("/auth/sessions", headers=bearer(second.json()["access_token"])).json()["sessions"]
    assert {s["method"] for s in sessions} == {"oidc"}


def test_oidc_rejections(client: httpx.Client) -> None:
    assert client.get("/auth/oidc/callback", params={"code": "x", "state": "forged"}).json()["error"] == \
        "oidc_invalid_state"
    denied = oidc_login(client, new_email("oidc"), action="deny")
    assert denied.status_code == 400 and denied.json()["error"] == "oidc_provider_error"
    # Replaying a callback: its state is spent.
    start = client.get("/auth/oidc/login")
    callback = httpx.post(start.headers["location"], data={"sub": new_email("oidc")}).headers["location"]
    assert client.get(callback).status_code == 200
    assert client.get(callback).json()["error"] == "oidc_invalid_state"
    # The same code under a fresh, valid state: the provider refuses it.
    code = httpx.URL(callback).params["code"]
    fresh_state = httpx.URL(client.get("/auth/oidc/login").headers["location"]).params["state"]
    reused = client.get("/auth/oidc/callback", params={"code": code, "state": fresh_state})
    assert reused.status_code == 400 and reused.json()["error"] == "oidc_code_exchange_failed"
    assert client.get("/auth/oidc/callback").status_code == 400


def test_oidc_does_not_take_over_an_unverified_password_account(client: httpx.Client) -> None:
    email = new_email("taken")
    assert client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    r = oidc_login(client, email)
    assert r.status_code == 409 and r.json()["error"] == "account_exists"
