"""The OIDC stand-in as a real process started by the stack: the code flow end to end, and each
thing a real provider refuses, refused."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from workbook.stack.manager import Stack, free_port
from workbook.stack.oidc import OidcProvider, register_client
from workbook.stack.state import stack_secret


@dataclass
class Provider:
    url: str
    registration_token: str
    meta: dict[str, Any]


@dataclass
class Client:
    client_id: str
    secret: str
    redirect_uri: str


@dataclass
class Login:
    """One authorization request: what the relying party keeps, and the URL it sends the browser to."""

    client: Client
    verifier: str
    nonce: str
    state: str
    url: httpx.URL


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def wait_answering(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            httpx.get(f"{url}/health", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"provider did not answer: {log.read_text()}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(root=tmp_path_factory.mktemp("oidcstack"), services=[OidcProvider()])
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture
def provider(stack: Stack) -> Provider:
    url = stack.state().services["oidc"].url
    meta = httpx.get(f"{url}/.well-known/openid-configuration", timeout=10).json()
    return Provider(url, stack_secret(stack.paths, "oidc"), meta)


def new_client(provider: Provider) -> Client:
    tag = uuid.uuid4().hex[:8]
    redirect_uri = f"http://127.0.0.1:1/callback/{tag}"
    client_id, secret = register_client(provider.url, provider.registration_token, f"test-{tag}", redirect_uri)
    return Client(client_id, secret, redirect_uri)


@pytest.fixture
def client(provider: Provider) -> Client:
    return new_client(provider)


def start(provider: Provider, client: Client, **overrides: str | None) -> Login:
    """The authorization URL a relying party builds (None drops a parameter)."""
    verifier, nonce, state = secrets.token_urlsafe(48), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params: dict[str, str | None] = {
        "response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
        "scope": "openid email", "state": state, "nonce": nonce, "code_challenge": s256(verifier),
        "code_challenge_method": "S256", **overrides}
    url = httpx.URL(provider.meta["authorization_endpoint"], params={k: v for k, v in params.items() if v is not None})
    return Login(client, verifier, nonce, state, url)


def consent(login: Login, **form: str) -> httpx.Response:
    return httpx.post(str(login.url), data=form or {"sub": "someone@example.test"}, timeout=10)


def code_of(login: Login, sub: str = "someone@example.test") -> str:
    resp = consent(login, sub=sub)
    assert resp.status_code == 302, resp.text
    back = httpx.URL(resp.headers["location"])
    assert str(back.copy_with(query=None)) == login.client.redirect_uri and back.params["state"] == login.state, back
    return back.params["code"]


def exchange(provider: Provider, login: Login, code: str, secret: str | None = None,
             **overrides: str | None) -> httpx.Response:
    form: dict[str, str | None] = {"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": login.client.redirect_uri, "code_verifier": login.verifier,
                                   **overrides}
    return httpx.post(provider.meta["token_endpoint"], timeout=10,
                      auth=(login.client.client_id, login.client.secret if secret is None else secret),
                      data={k: v for k, v in form.items() if v is not None})


def refused(resp: httpx.Response, status: int, error: str) -> str:
    assert resp.status_code == status and resp.json()["error"] == error, (resp.status_code, resp.text)
    return str(resp.json().get("error_description", ""))


def redirected_error(resp: httpx.Response, login: Login) -> httpx.URL:
    """An authorization error sent back to the client's registered redirect URI, with its state."""
    assert resp.status_code == 302, (resp.status_code, resp.text)
    back = httpx.URL(resp.headers["location"])
    assert str(back.copy_with(query=None)) == login.client.redirect_uri and back.params["state"] == login.state, back
    assert "code" not in back.params, back
    return back


def test_code_flow_gives_a_signed_id_token_with_the_nonce(provider: Provider, client: Client) -> None:
    home = httpx.get(provider.url, timeout=10).text
    assert "standins.oidc scriptable consent" in home  # what the workbook's OIDC client looks for
    login = start(provider, client)
    page = httpx.get(str(login.url), timeout=10)
    assert page.status_code == 200 and '<input name="sub"' in page.text and 'value="deny"' in page.text
    sub = f"{uuid.uuid4().hex[:8]}@example.test"
    resp = exchange(provider, login, code_of(login, sub))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and "openid" in body["scope"].split(), body
    header = jwt.get_unverified_header(body["id_token"])
    jwks = httpx.get(provider.meta["jwks_uri"], timeout=10).json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert header["alg"] == "RS256" and set(key) >= {"kty", "n", "e"} and "d" not in key, (header, key)
    claims = jwt.decode(body["id_token"], jwt.PyJWK(key).key, algorithms=["RS256"], audience=client.client_id,
                        issuer=provider.meta["issuer"])
    assert (claims["nonce"], claims["sub"], claims["email"]) == (login.nonce, sub, sub), claims
    assert "email_verified" not in claims, claims  # the stand-in vouches for no email
    info = httpx.get(provider.meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.json() == {"sub": sub, "email": sub}, info.text


def test_deny_sends_access_denied_with_the_state(provider: Provider, client: Client) -> None:
    login = start(provider, client)
    back = redirected_error(consent(login, sub="someone@example.test", action="deny"), login)
    assert back.params["error"] == "access_denied", back


@pytest.mark.parametrize("verifier", [None, "wrong"], ids=["missing", "wrong"])
def test_code_verifier_missing_or_wrong_is_invalid_grant(provider: Provider, client: Client,
                                                        verifier: str | None) -> None:
    login = start(provider, client)
    wrong = None if verifier is None else secrets.token_urlsafe(48)
    description = refused(exchange(provider, login, code_of(login), code_verifier=wrong), 400, "invalid_grant")
    assert "code_verifier" in description, description


def test_a_failed_exchange_spends_the_code(provider: Provider, client: Client) -> None:
    login = start(provider, client)
    code = code_of(login)
    refused(exchange(provider, login, code, code_verifier=secrets.token_urlsafe(48)), 400, "invalid_grant")
    refused(exchange(provider, login, code), 400, "invalid_grant")  # no second guess at the verifier


@pytest.mark.parametrize("overrides", [
    {"code_challenge_method": "plain"},
    {"code_challenge_method": None},
    {"code_challenge": None, "code_challenge_method": None},
], ids=["plain", "method_missing", "no_pkce"])
def test_authorization_without_s256_pkce_is_refused(provider: Provider, client: Client,
                                                   overrides: dict[str, str | None]) -> None:
    login = start(provider, client, **overrides)
    for resp in (httpx.get(str(login.url), timeout=10), consent(login)):
        back = redirected_error(resp, login)
        assert back.params["error"] == "invalid_request", back


def test_wrong_client_secret_is_invalid_client_and_leaves_the_code(provider: Provider, client: Client) -> None:
    login = start(provider, client)
    code = code_of(login)
    refused(exchange(provider, login, code, secret=secrets.token_urlsafe(24)), 401, "invalid_client")
    other = new_client(provider)
    refused(exchange(provider, Login(other, login.verifier, login.nonce, login.state, login.url), code,
                     redirect_uri=client.redirect_uri), 400, "invalid_grant")  # bound to the client it was issued to
    assert exchange(provider, login, code).status_code == 200  # the failed attempts never reached the code


def test_client_secret_post_refused_for_a_basic_client(provider: Provider, client: Client) -> None:
    login = start(provider, client)
    resp = httpx.post(provider.meta["token_endpoint"], timeout=10, data={
        "grant_type": "authorization_code", "code": code_of(login), "redirect_uri": client.redirect_uri,
        "code_verifier": login.verifier, "client_id": client.client_id, "client_secret": client.secret})
    refused(resp, 401, "invalid_client")


@pytest.mark.parametrize("redirect_uri", ["{registered}/more", "{registered}?x=1", "http://evil.example/cb"])
def test_unregistered_redirect_uri_is_refused_without_redirecting(provider: Provider, client: Client,
                                                                  redirect_uri: str) -> None:
    login = start(provider, client, redirect_uri=redirect_uri.format(registered=client.redirect_uri))
    for resp in (httpx.get(str(login.url), timeout=10), consent(login)):
        assert resp.status_code == 400 and "location" not in resp.headers, (resp.status_code, resp.headers)
        assert resp.json()["error"] == "invalid_request", resp.text


def test_token_request_with_another_redirect_uri_is_invalid_grant(provider: Provider, client: Client) -> None:
    login = start(provider, client)
    refused(exchange(provider, login, code_of(login), redirect_uri="https://evil.example/cb"), 400, "invalid_grant")


def test_unknown_client_is_refused_without_redirecting(provider: Provider, client: Client) -> None:
    stranger = Client("no-such-client", "x" * 24, client.redirect_uri)
    resp = httpx.get(str(start(provider, stranger).url), timeout=10)
    assert resp.status_code == 400 and "location" not in resp.headers, resp.headers
    assert resp.json()["error"] == "invalid_client", resp.text


def test_reused_code_is_refused_and_revokes_what_it_bought(provider: Provider, client: Client) -> None:
    login = start(provider, client)
    code = code_of(login)
    first = exchange(provider, login, code)
    assert first.status_code == 200, first.text
    refused(exchange(provider, login, code), 400, "invalid_grant")
    info = httpx.get(provider.meta["userinfo_endpoint"],
                     headers={"Authorization": f"Bearer {first.json()['access_token']}"})
    assert info.status_code == 401, info.text


@pytest.mark.parametrize("overrides", [{"nonce": None}, {"scope": "email"}], ids=["no_nonce", "no_openid_scope"])
def test_nonce_and_openid_scope_required(provider: Provider, client: Client, overrides: dict[str, str | None]) -> None:
    login = start(provider, client, **overrides)
    back = redirected_error(httpx.get(str(login.url), timeout=10), login)
    assert back.params["error"] in ("invalid_request", "invalid_scope"), back


def test_a_nonce_is_not_accepted_twice(provider: Provider, client: Client) -> None:
    first = start(provider, client)
    code_of(first)
    again = start(provider, client, nonce=first.nonce)
    back = redirected_error(consent(again), again)
    assert back.params["error"] == "invalid_request", back


def test_registration_needs_the_initial_access_token(provider: Provider) -> None:
    endpoint = provider.meta["registration_endpoint"]
    metadata = {"client_name": "intruder", "redirect_uris": ["http://evil.example/cb"]}
    for headers in ({}, {"Authorization": f"Bearer {secrets.token_urlsafe(18)}"},
                    {"Authorization": f"Basic {provider.registration_token}"}):
        resp = httpx.post(endpoint, json=metadata, headers=headers, timeout=10)
        refused(resp, 401, "invalid_token")
    bearer = {"Authorization": f"Bearer {provider.registration_token}"}
    refused(httpx.post(endpoint, json={"client_name": "no-uris"}, headers=bearer, timeout=10),
            400, "invalid_client_metadata")


def test_restart_keeps_registered_clients_and_the_signing_key(stack: Stack, provider: Provider,
                                                              client: Client) -> None:
    kids = [k["kid"] for k in httpx.get(provider.meta["jwks_uri"], timeout=10).json()["keys"]]
    stack.restart("oidc")
    assert [k["kid"] for k in httpx.get(provider.meta["jwks_uri"], timeout=10).json()["keys"]] == kids
    login = start(provider, client)
    assert exchange(provider, login, code_of(login)).status_code == 200


def test_expired_code_is_invalid_grant(tmp_path: Path) -> None:
    port, token = free_port(), secrets.token_urlsafe(18)
    url, log = f"http://127.0.0.1:{port}", tmp_path / "oidc.log"
    env = {**os.environ, "OIDC_STANDIN_REGISTRATION_TOKEN": token, "OIDC_STANDIN_CODE_TTL_S": "0.5"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "standins.oidc", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_answering(url, proc, log)
        provider = Provider(url, token, httpx.get(f"{url}/.well-known/openid-configuration").json())
        login = start(provider, new_client(provider))
        code = code_of(login)
        time.sleep(0.7)  # past the code's lifetime, which is what is under test
        refused(exchange(provider, login, code), 400, "invalid_grant")
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.parametrize(("env", "named"), [
    ({}, "OIDC_STANDIN_REGISTRATION_TOKEN"),
    ({"OIDC_STANDIN_ENV": "docker", "OIDC_STANDIN_REGISTRATION_TOKEN": "changeme"}, "OIDC_STANDIN_REGISTRATION_TOKEN"),
    ({"OIDC_STANDIN_ENV": "docker", "OIDC_STANDIN_CLIENTS": '{"rp": {"secret": "x1y2z3", "redirect_uris": ["http://x/cb"]}}'},
     "OIDC_STANDIN_CLIENTS[rp].secret"),
    ({"OIDC_STANDIN_CLIENTS": '{"rp": {"secret": "a-long-enough-secret", "redirect_uris": []}}'},
     "OIDC_STANDIN_CLIENTS[rp].redirect_uris"),
], ids=["no_clients", "weak_token", "weak_client_secret", "client_without_redirect"])
def test_refuses_to_start_naming_the_variable(env: dict[str, str], named: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OIDC_STANDIN_")}
    r = subprocess.run([sys.executable, "-m", "standins.oidc", "--port", "1"], env={**clean, **env},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and named in r.stderr, r.stderr
    assert all(v not in r.stderr for v in ("changeme", "x1y2z3", "a-long-enough-secret")), r.stderr


def test_configured_clients_log_in_without_registration(tmp_path: Path) -> None:
    port, secret = free_port(), secrets.token_urlsafe(24)
    url, log, redirect_uri = f"http://127.0.0.1:{port}", tmp_path / "oidc.log", "http://127.0.0.1:1/cb"
    env = {**os.environ, "OIDC_STANDIN_ENV": "docker",
           "OIDC_STANDIN_CLIENTS": f'{{"rp": {{"secret": "{secret}", "redirect_uris": ["{redirect_uri}"]}}}}'}
    env.pop("OIDC_STANDIN_REGISTRATION_TOKEN", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "standins.oidc", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_answering(url, proc, log)
        meta = httpx.get(f"{url}/.well-known/openid-configuration").json()
        assert "registration_endpoint" not in meta, meta
        assert httpx.post(f"{url}/register", json={"redirect_uris": ["http://x/cb"]}).status_code == 404
        provider = Provider(url, "", meta)
        login = start(provider, Client("rp", secret, redirect_uri))
        assert exchange(provider, login, code_of(login)).status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)
