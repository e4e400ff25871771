"""The backend against a real auth service: local token verification, revocation through
Redis, owner scoping, and the circuit breaker around its calls to auth (auth really killed)."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from auth_support import bearer, register_and_login

from workbook.stack.manager import Stack


def test_backend_accepts_auth_tokens_and_ends_them_on_logout(client: httpx.Client, api: httpx.Client) -> None:
    user = register_and_login(client)
    me = api.get("/api/users/me", headers=bearer(user["access_token"]))
    assert me.status_code == 200 and me.json()["id"] == user["id"], me.text
    assert client.post("/auth/logout", headers=bearer(user["access_token"])).status_code == 204
    after = api.get("/api/users/me", headers=bearer(user["access_token"]))
    assert after.status_code == 401 and after.headers["www-authenticate"].startswith("Bearer"), after.text


def test_tampered_and_wrong_type_tokens_refused(client: httpx.Client, api: httpx.Client) -> None:
    user = register_and_login(client)
    head, body, sig = user["access_token"].split(".")
    tampered = f"{head}.{body}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    unsigned = jwt.encode(jwt.decode(user["access_token"], options={"verify_signature": False}), None,
                          algorithm="none")
    for token in (tampered, unsigned, user["refresh_token"]):
        r = api.get("/api/users/me", headers=bearer(token))
        assert r.status_code == 401 and r.json()["error"] == "invalid_token", r.text


def test_threads_are_scoped_to_their_owner(client: httpx.Client, api: httpx.Client) -> None:
    alice, bob = register_and_login(client), register_and_login(client)
    thread = api.post("/api/threads", json={"title": "alice's"}, headers=bearer(alice["access_token"])).json()
    for method in ("GET", "PATCH", "DELETE"):
        r = api.request(method, f"/api/threads/{thread['id']}", json={"title": "x"} if method == "PATCH" else None,
                        headers=bearer(bob["access_token"]))
        assert r.status_code == 404 and "alice" not in r.text, (method, r.text)
    assert api.get("/api/threads", headers=bearer(bob["access_token"])).json()["total"] == 0
    gone = api.delete(f"/api/threads/{thread['id']}", headers=bearer(alice["access_token"]))
    assert gone.status_code == 204, gone.text


def breaker(api: httpx.Client) -> dict:
    return api.get("/api/metrics/circuit_breakers").json()["breakers"]["auth"]


def test_breaker_opens_without_auth_and_cached_keys_keep_verifying(
        stack: Stack, client: httpx.Client, api: httpx.Client) -> None:
    user = register_and_login(client)
    token = bearer(user["access_token"])
    thread = api.post("/api/threads", json={"title": "t"}, headers=token).json()
    threshold = breaker(api)["failure_threshold"]
    stack.kill("auth")
    try:
        codes = [api.delete(f"/api/threads/{thread['id']}", headers=token).status_code for _ in range(threshold)]
        assert codes == [503] * threshold
        state = breaker(api)
        assert state["state"] == "open", state
        t0 = time.perf_counter()
        fast = api.delete(f"/api/threads/{thread['id']}", headers=token)
        assert fast.status_code == 503 and fast.json()["dependency"] == "auth", fast.text
        assert time.perf_counter() - t0 < 0.5, "an open breaker must fail fast"
        assert api.get("/api/users/me", headers=token).status_code == 200
    finally:
        stack.restart("auth")
    deadline = time.monotonic() + breaker(api)["reset_s"] + 10
    while time.monotonic() < deadline:
        if api.delete(f"/api/threads/{thread['id']}", headers=token).status_code == 204:
            break
        time.sleep(0.3)
    assert breaker(api)["state"] == "closed"


def test_messages_crud_and_pagination_scoped_to_the_owner(client: httpx.Client, api: httpx.Client) -> None:
    alice, bob = register_and_login(client), register_and_login(client)
    ha, hb = bearer(alice["access_token"]), bearer(bob["access_token"])
    thread = api.post("/api/threads", json={"title": "t"}, headers=ha).json()
    base = f"/api/threads/{thread['id']}/messages"
    ids = [api.post(base, json={"content": f"m{i}"}, headers=ha).json()["id"] for i in range(5)]
    page = api.get(base, params={"limit": 2, "offset": 1}, headers=ha).json()
    assert page["total"] == 5 and [m["id"] for m in page["messages"]] == ids[1:3]
    assert api.patch(f"{base}/{ids[0]}", json={"content": "edited"}, headers=ha).json()["content"] == "edited"
    assert api.patch(f"{base}/{ids[0]}", json={"content": "x"}, headers=hb).status_code == 404
    assert api.delete(f"{base}/{ids[0]}", headers=hb).status_code == 404
    assert api.get(base, headers=hb).status_code == 404
    assert api.delete(f"{base}/{ids[0]}", headers=ha).status_code == 204
    assert api.get(base, headers=ha).json()["total"] == 4
