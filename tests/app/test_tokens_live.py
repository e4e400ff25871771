"""Refresh rotation, reuse detection, logout, sessions and key rotation on the running service."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import httpx
import jwt
import redis
from auth_support import AuthStack, bearer, new_email, register_and_login, run_cli

from workbook.stack.auth import WORKBOOK_SCOPES


def refresh(c: httpx.Client, token: str) -> httpx.Response:
    return c.post("/auth/refresh", json={"refresh_token": token})


def family_state(stack: AuthStack, family_id: str) -> tuple:
    url = stack.env()["AUTH_DATABASE_URL"]

    async def fetch() -> tuple:
        conn = await asyncpg.connect(url, password=stack.secret("postgres"))
        try:
            row = await conn.fetchrow("SELECT revoked_reason, (SELECT count(*) FROM refresh_tokens t WHERE "
                                      "t.family_id = f.id) AS tokens FROM refresh_families f WHERE id = $1::uuid",
                                      family_id)
            return tuple(row)
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.Client, auth_stack: AuthStack) -> None:
    s = register_and_login(client)
    first = refresh(client, s["refresh_token"])
    assert first.status_code == 200
    new = first.json()
    assert new["refresh_token"] != s["refresh_token"] and new["session_id"] == s["session_id"]
    reuse = refresh(client, s["refresh_token"])
    assert reuse.status_code == 401 and reuse.json()["error"] == "token_reused"
    # The whole family is gone: the successor refresh and its access token too.
    assert refresh(client, new["refresh_token"]).status_code == 401
    assert client.get("/auth/me", headers=bearer(new["access_token"])).status_code == 401
    assert family_state(auth_stack, s["session_id"]) == ("reuse_detected", 2)


def test_two_concurrent_refreshes_one_wins(auth_stack: AuthStack, client: httpx.Client) -> None:
    s = register_and_login(client)
    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(lambda _: httpx.post(f"{auth_stack.url}/auth/refresh", timeout=30, json={
            "refresh_token": s["refresh_token"]}).status_code, range(2)))
    assert codes == [200, 401]


def test_logout_revokes_with_a_deny_list_entry_that_expires(client: httpx.Client, auth_stack: AuthStack) -> None:
    s = register_and_login(client)
    assert client.post("/auth/logout", headers=bearer(s["access_token"])).status_code == 204
    assert client.get("/auth/me", headers=bearer(s["access_token"])).status_code == 401
    assert refresh(client, s["refresh_token"]).status_code == 401
    jti = jwt.decode(s["access_token"], options={"verify_signature": False})["jti"]
    r = redis.Redis.from_url(auth_stack.service_url("redis"), password=auth_stack.secret("redis"))
    ttl = r.ttl(f"auth:denied:{jti}")
    assert 0 < ttl <= 901


def test_sessions_are_listed_revocable_and_private(client: httpx.Client) -> None:
    email = new_email()
    a = register_and_login(client, email)
    b = client.post("/auth/login", json={"email": email, "password": "correct horse battery"}).json()
    listed = client.get("/auth/sessions", headers=bearer(a["access_token"])).json()["sessions"]
    assert {x["id"] for x in listed} == {a["session_id"], b["session_id"]}
    assert all(0 < x["expires_in"] <= 14 * 24 * 3600 for x in listed)
    other = register_and_login(client)
    # Another user's session id is not found, never revoked.
    assert client.delete(f"/auth/sessions/{a['session_id']}", headers=bearer(other["access_token"])).status_code == 404
    assert client.delete(f"/auth/sessions/{b['session_id']}", headers=bearer(a["access_token"])).status_code == 204
    assert client.get("/auth/me", headers=bearer(b["access_token"])).status_code == 401
    assert refresh(client, b["refresh_token"]).status_code == 401
    assert client.get("/auth/me", headers=bearer(a["access_token"])).status_code == 200


def test_session_maximum_evicts_the_oldest(client: httpx.Client) -> None:
    maximum = client.get("/auth/config").json()["session_max"]
    first = register_and_login(client)
    later = [client.post("/auth/login", json={"email": first["email"], "password": "correct horse battery"}).json()
             for _ in range(maximum)]
    listed = client.get("/auth/sessions", headers=bearer(later[-1]["access_token"])).json()["sessions"]
    assert len(listed) == maximum and first["session_id"] not in {x["id"] for x in listed}
    assert client.get("/auth/me", headers=bearer(first["access_token"])).status_code == 401
    assert refresh(client, first["refresh_token"]).status_code == 401


def test_password_change_ends_other_sessions(client: httpx.Client) -> None:
    a = register_and_login(client)
    b = client.post("/auth/login", json={"email": a["email"], "password": "correct horse battery"}).json()
    h = bearer(a["access_token"])
    bad = client.post("/auth/password", headers=h, json={"current_password": "nope", "new_password": "n" * 12})
    assert bad.status_code == 401
    ok = client.post("/auth/password", headers=h, json={"current_password": "correct horse battery",
                                                        "new_password": "a new long passphrase"})
    assert ok.status_code == 204
    assert client.get("/auth/me", headers=h).status_code == 200
    assert client.get("/auth/me", headers=bearer(b["access_token"])).status_code == 401
    assert client.post("/auth/login", json={"email": a["email"], "password": "correct horse battery"}).status_code == 401
    assert client.post("/auth/login", json={"email": a["email"], "password": "a new long passphrase"}).status_code == 200


def test_roles_change_through_the_admin_endpoint(client: httpx.Client, auth_stack: AuthStack) -> None:
    admin, target = register_and_login(client), register_and_login(client)
    denied = client.patch(f"/auth/admin/users/{target['id']}/role", json={"role": "viewer"},
                          headers=bearer(admin["access_token"]))
    assert denied.status_code == 403
    assert run_cli(auth_stack.env(), "set-role", admin["email"], "admin").returncode == 0
    admin = {**admin, **refresh(client, admin["refresh_token"]).json()}
    assert jwt.decode(admin["access_token"], options={"verify_signature": False})["role"] == "admin"
    h = bearer(admin["access_token"])
    assert client.patch(f"/auth/admin/users/{target['id']}/role", json={"role": "owner"}, headers=h).status_code == 403
    assert client.patch(f"/auth/admin/users/{target['id']}/role", json={"role": "boss"}, headers=h).status_code == 422
    r = client.patch(f"/auth/admin/users/{target['id']}/role", json={"role": "viewer"}, headers=h)
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    # The change reaches the target's tokens at their next refresh.
    rotated = refresh(client, target["refresh_token"]).json()
    claims = jwt.decode(rotated["access_token"], options={"verify_signature": False})
    assert claims["role"] == "viewer" and "threads:write" not in claims["permissions"]


def test_key_rotation_and_retirement_via_the_owner_endpoint(client: httpx.Client, auth_stack: AuthStack) -> None:
    owner = register_and_login(client)
    assert run_cli(auth_stack.env(), "set-role", owner["email"], "owner").returncode == 0
    owner = {**owner, **refresh(client, owner["refresh_token"]).json()}
    h = bearer(owner["access_token"])
    old_kid = jwt.get_unverified_header(owner["access_token"])["kid"]
    rotated = client.post("/auth/admin/keys/rotate", headers=h).json()
    new_kid = rotated["kid"]
    assert new_kid != old_kid and rotated["active"] == old_kid, "the new key signed before its activation delay"
    assert {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]} >= {old_kid, new_kid}
    time.sleep(max(0.0, rotated["signs_from"] - time.time()))
    fresh = register_and_login(client)
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid
    assert client.get("/auth/me", headers=h).status_code == 200  # old key still verifies
    assert client.post(f"/auth/admin/keys/{new_kid}/retire", headers=h).status_code == 409
    new_owner = {**owner, **refresh(client, owner["refresh_token"]).json()}
    assert client.post(f"/auth/admin/keys/{old_kid}/retire", headers=bearer(new_owner["access_token"])).status_code == 200
    assert client.get("/auth/me", headers=h).status_code == 401
    assert old_kid not in {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert client.get("/auth/me", headers=bearer(fresh["access_token"])).status_code == 200


def test_service_tokens_and_introspection(client: httpx.Client, auth_stack: AuthStack) -> None:
    secret = auth_stack.secret("auth")
    assert client.post("/auth/service-token", json={"client_id": "workbook", "client_secret": "wrong"}).status_code == 401
    assert client.post("/auth/service-token", json={"client_id": "nobody", "client_secret": secret}).status_code == 401
    too_wide = client.post("/auth/service-token", json={"client_id": "workbook", "client_secret": secret,
                                                         "scope": "auth:introspect keys:rotate"})
    assert too_wide.status_code == 403
    svc = client.post("/auth/service-token", json={"client_id": "workbook", "client_secret": secret}).json()
    claims = jwt.decode(svc["access_token"], options={"verify_signature": False})
    # Without a scope asked for, the token carries every scope the client is allowed.
    assert claims["type"] == "service" and claims["scope"] == " ".join(WORKBOOK_SCOPES)
    user = register_and_login(client)
    assert client.post("/auth/introspect", json={"token": user["access_token"]}).status_code == 401
    # A user token is not a service credential.
    assert client.post("/auth/introspect", json={"token": user["access_token"]},
                       headers=bearer(user["access_token"])).status_code == 401
    active = client.post("/auth/introspect", json={"token": user["access_token"]}, headers=bearer(svc["access_token"]))
    assert active.json()["active"] is True and active.json()["sub"] == user["id"]
    client.post("/auth/logout", headers=bearer(user["access_token"]))
    gone = client.post("/auth/introspect", json={"token": user["access_token"]}, headers=bearer(svc["access_token"]))
    assert gone.json() == {"active": False, "reason": "token revoked"}
    # A service token cannot call user endpoints.
    assert client.get("/auth/me", headers=bearer(svc["access_token"])).status_code == 401


