"""The platform's HTTP API, the only place notebooks talk to it (a different API adapts here).

    platform = auth(wb)                      # an AsyncAuth for the env's `auth` service
    user = await platform.new_user(ck)       # registered + logged in, under ck.ns, cleaned up
    me = await platform.me(user.tokens.access)
    resp = await platform.post("/auth/refresh", json={...})   # raw: an httpx.Response

Typed helpers raise `PlatformError` (status and body in the message, never a secret) when the
service does not answer as the happy path expects; the raw helpers (`request`, `get`, `post`,
`patch`, `delete`, and the `*_raw` calls) return the `httpx.Response` for negative checks.

Every call names a client IP through `X-Forwarded-For` (the auth service trusts it from the
stack's loopback proxy): each throwaway user gets its own address from 198.18.0.0/15 (the
benchmarking range), so per-IP login limits of parallel checks never meet.

The auth service offers no user deletion. `new_user`'s cleanup ends every session of the user
(`DELETE /auth/sessions`); the user row stays, under an email made unique by the check's
namespace plus a random suffix, so leftovers never collide with a later run.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from workbook.env import Env

_BENCH_NET = ipaddress.ip_network("198.18.0.0/15")
EMAIL_DOMAIN = "example.test"
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")


class PlatformError(AssertionError):
    """The platform answered a typed call with something other than success."""


class _Check(Protocol):
    @property
    def ns(self) -> str: ...

    def defer(self, fn: Any, *args: Any) -> None: ...


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


def _expect(resp: httpx.Response, status: int, what: str) -> httpx.Response:
    if resp.status_code != status:
        body = redact(resp.text)[:300]
        raise PlatformError(f"{what}: expected {status}, got {resp.status_code}: {body}")
    return resp


def _tokens(body: dict[str, Any]) -> Tokens:
    return Tokens(access=body["access_token"], refresh=body["refresh_token"],
                  session_id=body["session_id"], expires_in=int(body["expires_in"]))


class AsyncAuth:
    """Client of the auth service (register, login, refresh, sessions, service tokens, admin)."""

    def __init__(self, env: Env, service: str = "auth", client_id: str | None = None):
        svc = env.service(service)
        self.env = env
        self.url = svc.url.rstrip("/")
        self.client_id = client_id or svc.user or "workbook"
        self._client_secret = svc.secret()
        timeout = httpx.Timeout(env.timeouts.request_s, connect=env.timeouts.connect_s)
        self.http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncAuth:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- raw requests: the response as it came, for negative checks ---------------------------

    async def request(self, method: str, path: str, *, token: str | None = None, ip: str | None = None,
                      headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        h = dict(headers or {})
        if token is not None:
            h.setdefault("Authorization", f"Bearer {token}")
        if ip is not None:
            h.setdefault("X-Forwarded-For", ip)
        return await self.http.request(method, path, headers=h, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    # -- public ---------------------------------------------------------------------------------

    async def config(self) -> dict[str, Any]:
        return _expect(await self.get("/auth/config"), 200, "GET /auth/config").json()

    async def jwks(self) -> dict[str, Any]:
        return _expect(await self.get("/.well-known/jwks.json"), 200, "GET JWKS").json()

    # -- accounts -------------------------------------------------------------------------------

    async def register_raw(self, email: str, password: str, ip: str | None = None) -> httpx.Response:
        return await self.post("/auth/register", json={"email": email, "password": password}, ip=ip)

    async def register(self, email: str, password: str, ip: str | None = None) -> User:
        ip = ip or random_ip()
        body = _expect(await self.register_raw(email, password, ip), 201, f"register {email}").json()
        return User(id=body["id"], email=body["email"], password=password, ip=ip, role=body["role"])

    async def login_raw(self, email: str, password: str, ip: str | None = None,
                        headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.post("/auth/login", json={"email": email, "password": password}, ip=ip,
                               headers=headers)

    async def login(self, user: User, ip: str | None = None, headers: dict[str, str] | None = None) -> Tokens:
        """Log `user` in (from `ip`, default the user's own address); sets and returns user.tokens."""
        resp = await self.login_raw(user.email, user.password, ip or user.ip, headers)
        user.tokens = _tokens(_expect(resp, 200, f"login {user.email}").json())
        return user.tokens

    async def refresh_raw(self, refresh_token: str, ip: str | None = None) -> httpx.Response:
        return await self.post("/auth/refresh", json={"refresh_token": refresh_token}, ip=ip)

    async def refresh(self, refresh_token: str, ip: str | None = None) -> Tokens:
        return _tokens(_expect(await self.refresh_raw(refresh_token, ip), 200, "refresh").json())

    async def logout_raw(self, access: str, ip: str | None = None) -> httpx.Response:
        return await self.post("/auth/logout", token=access, ip=ip)

    async def logout(self, access: str, ip: str | None = None) -> None:
        _expect(await self.logout_raw(access, ip), 204, "logout")

    async def change_password_raw(self, access: str, current: str, new: str,
                                  ip: str | None = None) -> httpx.Response:
        return await self.post("/auth/password", token=access, ip=ip,
                               json={"current_password": current, "new_password": new})

    async def change_password(self, user: User, new: str) -> None:
        _expect(await self.change_password_raw(user.access, user.password, new, user.ip), 204, "change password")
        user.password = new

    async def me_raw(self, access: str) -> httpx.Response:
        return await self.get("/auth/me", token=access)

    async def me(self, access: str) -> dict[str, Any]:
        return _expect(await self.me_raw(access), 200, "GET /auth/me").json()

    # -- sessions -------------------------------------------------------------------------------

    async def sessions(self, access: str) -> list[dict[str, Any]]:
        return _expect(await self.get("/auth/sessions", token=access), 200, "list sessions").json()["sessions"]

    async def revoke_session_raw(self, access: str, session_id: str, ip: str | None = None) -> httpx.Response:
        return await self.delete(f"/auth/sessions/{session_id}", token=access, ip=ip)

    async def revoke_session(self, access: str, session_id: str) -> None:
        _expect(await self.revoke_session_raw(access, session_id), 204, "revoke session")

    async def revoke_all_sessions(self, access: str) -> None:
        _expect(await self.delete("/auth/sessions", token=access), 204, "revoke all sessions")

    # -- service-to-service ---------------------------------------------------------------------

    async def service_token_raw(self, client_id: str | None = None, secret: str | None = None,
                                scope: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"client_id": client_id or self.client_id,
                                "client_secret": secret if secret is not None else (self._client_secret or "")}
        if scope is not None:
            body["scope"] = scope
        return await self.post("/auth/service-token", json=body)

    async def service_token(self, scope: str | None = None) -> str:
        """A service token for this env's workbook client (its id and secret come from the env)."""
        return _expect(await self.service_token_raw(scope=scope), 200, "service token").json()["access_token"]

    async def introspect_raw(self, token: str, service_token: str) -> httpx.Response:
        return await self.post("/auth/introspect", token=service_token, json={"token": token})

    async def introspect(self, token: str, service_token: str | None = None) -> dict[str, Any]:
        st = service_token or await self.service_token("auth:introspect")
        return _expect(await self.introspect_raw(token, st), 200, "introspect").json()

    # -- admin ----------------------------------------------------------------------------------

    async def set_role_raw(self, admin_access: str, user_id: str, role: str) -> httpx.Response:
        return await self.patch(f"/auth/admin/users/{user_id}/role", token=admin_access, json={"role": role})

    async def set_role(self, admin_access: str, user_id: str, role: str) -> dict[str, Any]:
        return _expect(await self.set_role_raw(admin_access, user_id, role), 200, "change role").json()

    # -- throwaway users ------------------------------------------------------------------------

    async def new_user(self, ck: _Check, login: bool = True, password: str | None = None) -> User:
        """Register a user under `ck.ns` (logged in unless login=False); its sessions end with the check.

        Cleanup logs in again with the user's current password (update `user.password` if the
        check changes it outside `change_password`) and revokes every session; if the service
        refuses that login (e.g. a lockout the check left behind), nothing more can be done
        through the API and the sessions expire with their TTL.
        """
        user = await self.register(unique_email(ck.ns), password or new_password())
        ck.defer(self.end_sessions, user)
        if login:
            await self.login(user)
        return user

    async def end_sessions(self, user: User) -> None:
        resp = await self.login_raw(user.email, user.password, user.ip)
        if resp.status_code != 200:
            return
        await self.revoke_all_sessions(resp.json()["access_token"])


def auth(env: Env, service: str = "auth") -> AsyncAuth:
    """The auth service client for `env` (close it with `await client.aclose()` or `async with`)."""
    return AsyncAuth(env, service)
