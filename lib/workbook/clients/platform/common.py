"""What the platform's API clients share: errors, raw requests, throwaway identities."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from workbook.checks import running, using
from workbook.clients import tls
from workbook.clients.scope import Check
from workbook.params import Env

_BENCH_NET = ipaddress.ip_network("198.18.0.0/15")
EMAIL_DOMAIN = "example.test"
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")


class PlatformError(AssertionError):
    """The platform answered a typed call with something other than success."""


@dataclass
class Tokens:
    access: str
    refresh: str
    session_id: str
    expires_in: int

    def __repr__(self) -> str:  # tokens are credentials: never in a repr
        return f"Tokens(session_id={self.session_id!r}, expires_in={self.expires_in})"


@dataclass
class User:
    id: str
    email: str
    password: str = field(repr=False)
    ip: str
    role: str = "member"
    tokens: Tokens | None = None

    @property
    def access(self) -> str:
        if self.tokens is None:
            raise PlatformError(f"{self.email} is not logged in")
        return self.tokens.access


def random_ip() -> str:
    """A client address of its own, from 198.18.0.0/15 (never a real client)."""
    return str(_BENCH_NET[secrets.randbelow(_BENCH_NET.num_addresses - 2) + 1])


def unique_email(ns: str) -> str:
    """ns (<= 54 chars) + a random suffix: unique per check and per call, a valid local part."""
    return f"{ns[:54]}.{secrets.token_hex(4)}@{EMAIL_DOMAIN}"


def new_password() -> str:
    return "pw-" + secrets.token_urlsafe(18)


def redact(text: str) -> str:
    """`text` with every JWT replaced by `<jwt>`: response bodies in messages never carry a token."""
    return _JWT.sub("<jwt>", text)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(token: str, header: dict[str, Any] | None = None, claims: dict[str, Any] | None = None,
          signature: str | None = None) -> str:
    """`token` with header fields and claims changed (or added) and its signature kept, or replaced
    by `signature` ("" for none): what an attacker can make without the private key."""
    head, body, sig = token.split(".")

    def edit(part: str, changes: dict[str, Any] | None) -> str:
        if not changes:
            return part
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return _b64(json.dumps({**data, **changes}).encode())

    return f"{edit(head, header)}.{edit(body, claims)}.{sig if signature is None else signature}"


def expect(resp: httpx.Response, status: int, what: str) -> httpx.Response:
    if resp.status_code != status:
        body = redact(resp.text)[:300]
        raise PlatformError(f"{what}: expected {status}, got {resp.status_code}: {body}")
    return resp


def rejected(resp: httpx.Response, status: int = 401) -> dict[str, Any]:
    """The JSON body of a refusal, after asserting its status (the body redacted in the message)."""
    text = redact(resp.text)[:200]
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {text}"
    return resp.json()


def tokens_from(body: dict[str, Any]) -> Tokens:
    return Tokens(access=body["access_token"], refresh=body["refresh_token"],
                  session_id=body["session_id"], expires_in=int(body["expires_in"]))


class ApiClient:
    """httpx with the env's timeouts and raw calls that return the response as it came."""

    def __init__(self, env: Env, service: str, url: str | None = None):
        svc = env.service(service)
        self.env = env
        self.service = service
        self.url = (url or svc.url).rstrip("/")
        self._timeout = httpx.Timeout(env.timeouts.request_s, connect=env.timeouts.connect_s)
        self.http = self._client()
        self._check: object = None

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=self._timeout, verify=tls.context())

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _connections_of_this_check(self) -> None:
        # Another notebook may restart the service between two of our checks (never during one:
        # a check holds what it uses): a keep-alive connection pooled before would meet a dead
        # socket (ReadError on a request the new process never saw). Each check starts afresh.
        now = running()
        if now is not self._check:
            self._check = now
            old, self.http = self.http, self._client()
            await old.aclose()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, *, token: str | None = None, ip: str | None = None,
                      headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        h = dict(headers or {})
        if token is not None:
            h.setdefault("Authorization", f"Bearer {token}")
        if ip is not None:
            h.setdefault("X-Forwarded-For", ip)
        await using(self.service)
        await self._connections_of_this_check()
        return await self.http.request(method, path, headers=h, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)
