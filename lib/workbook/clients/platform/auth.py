"""Client of the auth service: accounts, sessions, refresh, service tokens, admin, throwaway users.

Throwaway users are deleted with their check, through the API (`DELETE /auth/users/me`, which
also makes the backend delete everything of theirs), where the platform deletes accounts
(`expect.auth.user_deletion`); elsewhere their sessions are ended and the user rows stay,
under emails made unique by the check's namespace plus a random suffix. `new_user` defers the
deletion to the check it is given; a registration made any other way during a check
(`register`, `register_raw`: a negative test that succeeded, a step probing a limit) is
deleted with the running check, so nothing the workbook registers outlives its check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from workbook.checks import owner, require
from workbook.clients import postgres
from workbook.clients.scope import Check
from workbook.clients.platform.common import (ApiClient, PlatformError, Tokens, User, expect, new_password,
                                              random_ip, tokens_from, unique_email)
from workbook.params import Env
from workbook.polling import PollTimeout, poll


class AsyncAuth(ApiClient):
    """Client of the auth service (register, login, refresh, sessions, service tokens, admin)."""

    def __init__(self, env: Env, service: str = "auth", client_id: str | None = None, url: str | None = None):
        super().__init__(env, service, url)
        svc = env.service(service)
        self.client_id = client_id or svc.user or "workbook"
        self._client_secret = svc.secret()

    # -- public ---------------------------------------------------------------------------------

    async def config(self) -> dict[str, Any]:
        return expect(await self.get("/auth/config"), 200, "GET /auth/config").json()

    async def jwks(self) -> dict[str, Any]:
        return expect(await self.get("/.well-known/jwks.json"), 200, "GET JWKS").json()

    # -- accounts -------------------------------------------------------------------------------

    async def _register(self, email: str, password: str, ip: str | None) -> httpx.Response:
        return await self.post("/auth/register", json={"email": email, "password": password}, ip=ip)

    async def register_raw(self, email: str, password: str, ip: str | None = None) -> httpx.Response:
        """POST /auth/register as it comes; a user it creates is deleted with the running check
        (or, made for a shared fixture, at the notebook's end)."""
        resp = await self._register(email, password, ip)
        self._deleted_with_owner(resp, password, ip or random_ip())
        return resp

    def _deleted_with_owner(self, resp: httpx.Response, password: str, ip: str) -> User | None:
        """The user a 201 created, registered for deletion with the running check or fixture."""
        if resp.status_code != 201 or not self.env.expect.auth.user_deletion or (by := owner()) is None:
            return None
        body = resp.json()
        user = User(id=body["id"], email=body["email"], password=password, ip=ip, role=body["role"])
        by.defer(self.delete_user, user)
        return user

    async def register(self, email: str, password: str, ip: str | None = None) -> User:
        """A registered user (deleted with the running check, as `register_raw`). The deletion
        holds this very object, so it uses the tokens a later login gives it instead of logging in."""
        ip = ip or random_ip()
        resp = await self._register(email, password, ip)
        kept = self._deleted_with_owner(resp, password, ip)
        body = expect(resp, 201, f"register {email}").json()
        return kept or User(id=body["id"], email=body["email"], password=password, ip=ip, role=body["role"])

    async def login_raw(self, email: str, password: str, ip: str | None = None,
                        headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.post("/auth/login", json={"email": email, "password": password}, ip=ip,
                               headers=headers)

    async def login(self, user: User, ip: str | None = None, headers: dict[str, str] | None = None) -> Tokens:
        """Log `user` in (from `ip`, default the user's own address); sets and returns user.tokens."""
        resp = await self.login_raw(user.email, user.password, ip or user.ip, headers)
        user.tokens = tokens_from(expect(resp, 200, f"login {user.email}").json())
        return user.tokens

    async def refresh_raw(self, refresh_token: str, ip: str | None = None) -> httpx.Response:
        return await self.post("/auth/refresh", json={"refresh_token": refresh_token}, ip=ip)

    async def refresh(self, refresh_token: str, ip: str | None = None) -> Tokens:
        return tokens_from(expect(await self.refresh_raw(refresh_token, ip), 200, "refresh").json())

    async def logout_raw(self, access: str, ip: str | None = None) -> httpx.Response:
        return await self.post("/auth/logout", token=access, ip=ip)

    async def logout(self, access: str, ip: str | None = None) -> None:
        expect(await self.logout_raw(access, ip), 204, "logout")

    async def change_password_raw(self, access: str, current: str, new: str,
                                  ip: str | None = None) -> httpx.Response:
        return await self.post("/auth/password", token=access, ip=ip,
                               json={"current_password": current, "new_password": new})

    async def change_password(self, user: User, new: str) -> None:
        expect(await self.change_password_raw(user.access, user.password, new, user.ip), 204, "change password")
        user.password = new

    async def me_raw(self, access: str) -> httpx.Response:
        return await self.get("/auth/me", token=access)

    async def me(self, access: str) -> dict[str, Any]:
        return expect(await self.me_raw(access), 200, "GET /auth/me").json()

    # -- deleting accounts ----------------------------------------------------------------------

    async def delete_me_raw(self, access: str, password: str | None = None, ip: str | None = None) -> httpx.Response:
        """DELETE /auth/users/me: the caller's account (password required where it has one)."""
        return await self.request("DELETE", "/auth/users/me", token=access, ip=ip,
                                  json={"password": password} if password is not None else None)

    async def admin_delete_user_raw(self, admin_access: str, user_id: str) -> httpx.Response:
        return await self.delete(f"/auth/admin/users/{user_id}", token=admin_access)

    async def delete_user(self, user: User) -> None:
        """Delete `user`'s account through the API, as its owner: with the tokens it has, or after
        logging in again (waiting out a lockout or rate limit the check left, up to the env's
        request timeout). A login refused as bad credentials means the account is gone already
        (or its password is not the one known here): nothing more can be done through the API,
        and the leftovers sweep names the check if it stayed."""
        if user.tokens is not None:
            resp = await self._delete_admitted(user, user.access)
            if resp.status_code == 202:
                return
        login = await self._admitted(lambda: self.login_raw(user.email, user.password, user.ip), user)
        if login.status_code == 401:
            return
        access = expect(login, 200, f"login {user.email} to delete it").json()["access_token"]
        expect(await self._delete_admitted(user, access), 202, f"delete {user.email}")

    async def _delete_admitted(self, user: User, access: str) -> httpx.Response:
        return await self._admitted(lambda: self.delete_me_raw(access, user.password, user.ip), user)

    async def _admitted(self, call: Callable[[], Awaitable[httpx.Response]], user: User) -> httpx.Response:
        """`call`'s answer once it is not a 429 (a lockout or login rate limit still running)."""
        within = self.env.timeouts.request_s
        try:
            return await poll(call, until=lambda r: r.status_code != 429, within_s=within, every_s=0.25,
                              what=f"auth admitting {user.email} again")
        except PollTimeout as e:
            raise PlatformError(f"user {user.email} not deleted: {e}") from None

    # -- sessions -------------------------------------------------------------------------------

    async def sessions(self, access: str) -> list[dict[str, Any]]:
        return expect(await self.get("/auth/sessions", token=access), 200, "list sessions").json()["sessions"]

    async def revoke_session_raw(self, access: str, session_id: str, ip: str | None = None) -> httpx.Response:
        return await self.delete(f"/auth/sessions/{session_id}", token=access, ip=ip)

    async def revoke_session(self, access: str, session_id: str) -> None:
        expect(await self.revoke_session_raw(access, session_id), 204, "revoke session")

    async def revoke_all_sessions(self, access: str) -> None:
        expect(await self.delete("/auth/sessions", token=access), 204, "revoke all sessions")

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
        return expect(await self.service_token_raw(scope=scope), 200, "service token").json()["access_token"]

    async def introspect_raw(self, token: str, service_token: str) -> httpx.Response:
        return await self.post("/auth/introspect", token=service_token, json={"token": token})

    async def introspect(self, token: str, service_token: str | None = None) -> dict[str, Any]:
        st = service_token or await self.service_token("auth:introspect")
        return expect(await self.introspect_raw(token, st), 200, "introspect").json()

    # -- admin ----------------------------------------------------------------------------------

    async def set_role_raw(self, admin_access: str, user_id: str, role: str) -> httpx.Response:
        return await self.patch(f"/auth/admin/users/{user_id}/role", token=admin_access, json={"role": role})

    async def set_role(self, admin_access: str, user_id: str, role: str) -> dict[str, Any]:
        return expect(await self.set_role_raw(admin_access, user_id, role), 200, "change role").json()

    async def keys(self, owner_access: str) -> dict[str, Any]:
        """The signing keys (`active` kid, each key's created/retired); needs `keys:rotate`."""
        return expect(await self.get("/auth/admin/keys", token=owner_access), 200, "list keys").json()

    async def rotate_key(self, owner_access: str) -> dict[str, Any]:
        """Rotate in a new signing key: `kid` (published now), `signs_from` (epoch s), `active` (signing now)."""
        return expect(await self.post("/auth/admin/keys/rotate", token=owner_access), 200, "rotate key").json()

    async def retire_key_raw(self, owner_access: str, kid: str) -> httpx.Response:
        return await self.post(f"/auth/admin/keys/{kid}/retire", token=owner_access)

    async def grant_role(self, user: User, role: str) -> Tokens:
        """Give `user` a role directly in auth's database, then refresh so the tokens carry it.

        Checks need an admin or owner to exist before the admin API can make one; the first is
        made in the database, as an operator would with `python -m app.auth set-role`. Only
        where the workbook owns that database (`destructive: true`); elsewhere the calling check
        is skipped with the reason, since it cannot arrange what it needs.
        """
        require("destructive")
        conn = await postgres.connect(self.env, "postgres", database="auth")
        try:
            done = await conn.execute("UPDATE users SET role = $1 WHERE id = $2::uuid", role, user.id)
        finally:
            await conn.close()
        if done != "UPDATE 1":
            raise PlatformError(f"no user {user.id} in auth's database")
        user.role = role
        if user.tokens is None:
            return await self.login(user)
        user.tokens = await self.refresh(user.tokens.refresh, ip=user.ip)
        return user.tokens

    # -- throwaway users ------------------------------------------------------------------------

    async def new_user(self, ck: Check, login: bool = True, password: str | None = None) -> User:
        """Register a user under `ck.ns` (logged in unless login=False), deleted with the check
        (`delete_user`; where the platform deletes no accounts, its sessions are ended instead).

        Cleanup uses the user's current password (update `user.password` if the check changes
        it outside `change_password`).
        """
        email, pw, ip = unique_email(ck.ns), password or new_password(), random_ip()
        body = expect(await self._register(email, pw, ip), 201, f"register {email}").json()
        user = User(id=body["id"], email=body["email"], password=pw, ip=ip, role=body["role"])
        ck.defer(self.delete_user if self.env.expect.auth.user_deletion else self.end_sessions, user)
        if login:
            await self.login(user)
        return user

    async def end_sessions(self, user: User) -> None:
        resp = await self.login_raw(user.email, user.password, user.ip)
        if resp.status_code != 200:
            return
        await self.revoke_all_sessions(resp.json()["access_token"])

    # -- email links and profile ------------------------------------------------------------------

    async def verification_status(self, token: str) -> str:
        """What using a verification link now would meet (valid, expired, used, unknown), without using it."""
        return expect(await self.get("/auth/verify-email", params={"token": token}), 200, "verification status").json()["status"]

    async def verify_email_raw(self, token: str) -> httpx.Response:
        return await self.post("/auth/verify-email", json={"token": token})

    async def request_reset_raw(self, email: str) -> httpx.Response:
        return await self.post("/auth/password-reset", json={"email": email})

    async def confirm_reset_raw(self, token: str, new_password: str) -> httpx.Response:
        return await self.post("/auth/password-reset/confirm", json={"token": token, "new_password": new_password})

    async def complete_profile_raw(self, access: str, display_name: str) -> httpx.Response:
        return await self.patch("/auth/users/me", json={"display_name": display_name}, token=access)


def auth(env: Env, service: str = "auth", url: str | None = None) -> AsyncAuth:
    """The auth service client for `env` (close it with `await client.aclose()` or `async with`);
    `url` points it at another instance of the service (e.g. a `faults.second_instance`)."""
    return AsyncAuth(env, service, url=url)
