"""Register, login, errors and request plumbing against the real service."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
from auth_support import PASSWORD, AuthStack, bearer, new_email, register_and_login


def test_register_login_and_me(client: httpx.Client) -> None:
    s = register_and_login(client)
    me = client.get("/auth/me", headers=bearer(s["access_token"])).json()
    assert me["email"] == s["email"] and me["role"] == "member" and "threads:write" in me["permissions"]


def test_email_is_unique_case_insensitively(client: httpx.Client) -> None:
    email = new_email()
    assert client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    r = client.post("/auth/register", json={"email": email.upper(), "password": PASSWORD})
    assert r.status_code == 409 and r.json()["error"] == "email_taken"
    assert client.post("/auth/login", json={"email": email.upper(), "password": PASSWORD}).status_code == 200


def test_concurrent_registration_of_one_email_has_one_winner(auth_stack: AuthStack) -> None:
    email = new_email("race")

    def attempt(i: int) -> int:
        variant = email.upper() if i % 2 else email
        return httpx.post(f"{auth_stack.url}/auth/register", json={"email": variant, "password": PASSWORD},
                          timeout=30).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(attempt, range(12)))
    assert sorted(codes) == [201] + [409] * 11, codes


def test_unknown_user_and_wrong_password_look_the_same(client: httpx.Client) -> None:
    s = register_and_login(client)
    wrong = client.post("/auth/login", json={"email": s["email"], "password": "not the password"})
    unknown = client.post("/auth/login", json={"email": new_email("ghost"), "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json().items() if k != "request_id"}  # noqa: E731
    assert strip(wrong) == strip(unknown) == {"error": "invalid_credentials", "detail": "invalid email or password"}
    assert wrong.headers["www-authenticate"].startswith("Bearer")


def test_bad_input_is_4xx_naming_the_field(client: httpx.Client) -> None:
    r = client.post("/auth/login", content=b'{"email": "a@b.io",', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body"
    r = client.post("/auth/login", json={"password": "x"})
    assert r.status_code == 422 and [f["field"] for f in r.json()["fields"]] == ["email"]
    r = client.post("/auth/register", json={"email": new_email(), "password": "short"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "password"
    r = client.post("/auth/login", json={"email": "a@b.io", "password": "x" * 70_000})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    r = client.post("/auth/login", json=["not", "an", "object"])
    assert r.status_code == 422
    assert client.get("/auth/me", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/auth/me", headers={"Authorization": "Bearer not.a.jwt"}).json()["error"] == "invalid_token"


def test_request_ids_are_echoed_or_made(client: httpx.Client) -> None:
    assert client.get("/health/live", headers={"X-Request-ID": "check-123"}).headers["x-request-id"] == "check-123"
    made = client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert made and made != "bad id with spaces"
    r = client.post("/auth/login", json={}, headers={"X-Request-ID": "rid-422"})
    assert r.json()["request_id"] == "rid-422"


def test_cors_answers_only_configured_origins(client: httpx.Client) -> None:
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = client.options("/auth/login", headers={"Origin": "http://127.0.0.1:8888", **pre})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://127.0.0.1:8888"
    evil = client.options("/auth/login", headers={"Origin": "https://evil.example", **pre})
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers


def test_health_and_public_config_expose_no_secrets(client: httpx.Client, auth_stack: AuthStack) -> None:
    ready = client.get("/health/ready").json()
    assert ready["status"] == "ready" and set(ready["checks"]) == {"postgres", "redis", "keys", "oidc"}
    config = client.get("/auth/config").text
    jwks = client.get("/.well-known/jwks.json").json()
    assert all("d" not in k for k in jwks["keys"]) and jwks["keys"]
    for name in ("postgres", "redis", "auth-audit-db", "auth"):
        assert auth_stack.secret(name) not in config
    # auth's OIDC client secret is issued by the provider when the stack registers auth: read it
    # where auth got it, its environment.
    pid = auth_stack.stack.state().services["auth"].pid
    oidc_secret = psutil.Process(pid).environ()["AUTH_OIDC_CLIENT_SECRET"]
    assert len(oidc_secret) >= 16 and oidc_secret not in config and oidc_secret not in str(ready)
