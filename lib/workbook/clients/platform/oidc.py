"""Driving auth's OIDC login the way a browser does: auth's redirect to the provider, the
provider's consent, the provider's redirect back to auth's callback.

    flow = await oidc_flow(wb, platform)
    body = await flow.login(ck, sub="someone@example.test", ip=ip)   # tokens + user, deleted with the check

The consent step posts the stand-in provider's form (standins.oidc: a `sub` logs in,
`action=deny` refuses); against any other provider `flow.scriptable` is False and `consent`
skips the calling check, since a real provider's login page cannot be scripted.

A user an OIDC login creates is deleted with the check (`DELETE /auth/users/me`, where the
platform deletes accounts). It has no password, so auth wants a fresh login for that: the
callback's own session if it is still live, else a new login at the provider for the same
subject (the stand-in's subject is the user's email).
"""

from __future__ import annotations

from typing import Any

import httpx

from workbook.checks import skip, using
from workbook.clients import tls
from workbook.clients.platform.auth import AsyncAuth
from workbook.clients.scope import Check
from workbook.clients.platform.common import expect
from workbook.params import Env

# What the stand-in's home page says of its consent form (standins.oidc.SCRIPTABLE_MARKER;
# the workbook never imports the stand-ins, it only talks to them).
SCRIPTABLE_MARKER = "standins.oidc scriptable consent"


def state_key(authorize_url: httpx.URL) -> str:
    """Where auth keeps a login request's state, nonce and PKCE verifier in Redis."""
    return f"auth:oidc:state:{authorize_url.params['state']}"


class OidcFlow:
    def __init__(self, env: Env, auth: AsyncAuth, provider: httpx.AsyncClient, meta: dict[str, Any],
                 scriptable: bool):
        self.env, self.auth, self.provider, self.meta, self.scriptable = env, auth, provider, meta, scriptable
        # (check, user id) pairs whose deletion is deferred already: a second login of the same
        # user in one check must not schedule a second deletion.
        self._deleting: set[tuple[int, str]] = set()

    async def aclose(self) -> None:
        await self.provider.aclose()

    async def start(self, ip: str | None = None) -> httpx.URL:
        """GET /auth/oidc/login: auth answers 302 to the provider; returns that authorization URL."""
        resp = expect(await self.auth.get("/auth/oidc/login", ip=ip), 302, "OIDC login start")
        return httpx.URL(resp.headers["location"])

    async def consent(self, authorize_url: httpx.URL, sub: str, action: str | None = None) -> httpx.URL:
        """The provider's answer to the user (`sub` logs in, or action="deny"): its redirect to auth."""
        if not self.scriptable:
            skip(f"the provider at {self.provider.base_url} has no scriptable consent form "
                 "(the stand-in standins.oidc only)")
        resp = await self.provider.post(str(authorize_url), data={"sub": sub, **({"action": action} if action else {})})
        return httpx.URL(expect(resp, 302, "provider consent").headers["location"])

    async def callback(self, ck: Check, callback_url: httpx.URL, ip: str | None = None) -> httpx.Response:
        """auth's callback as the browser calls it; the user it logs in is deleted with the check
        (where the platform deletes no accounts, the session it opens is ended)."""
        resp = await self.auth.get(str(callback_url), ip=ip)
        if resp.status_code == 200:
            body = resp.json()
            if not self.env.expect.auth.user_deletion:
                ck.defer(self._end_sessions, body["access_token"])
            elif (key := (id(ck), body["user"]["id"])) not in self._deleting:
                self._deleting.add(key)
                ck.defer(self._delete_user, key, body["access_token"], body["user"]["email"], ip)
        return resp

    async def _end_sessions(self, access: str) -> None:
        # Raw: an earlier cleanup of the same user may have ended the sessions already.
        await self.auth.delete("/auth/sessions", token=access)

    async def _delete_user(self, key: tuple[int, str], access: str, sub: str, ip: str | None) -> None:
        self._deleting.discard(key)
        if (await self.auth.delete_me_raw(access, ip=ip)).status_code == 202:
            return
        # The callback's session ended (the check logged out) or is no longer fresh: log in again.
        resp = await self.auth.get(str(await self.consent(await self.start(ip), sub)), ip=ip)
        fresh = expect(resp, 200, f"OIDC login of {sub} to delete it").json()["access_token"]
        expect(await self.auth.delete_me_raw(fresh, ip=ip), 202, f"delete {sub}")

    async def login(self, ck: Check, sub: str, ip: str | None = None) -> dict[str, Any]:
        """The whole flow for `sub`; auth's callback body (tokens, session_id, user)."""
        resp = await self.callback(ck, await self.consent(await self.start(ip), sub), ip)
        return expect(resp, 200, "OIDC callback").json()


async def oidc_flow(env: Env, auth: AsyncAuth, service: str = "oidc") -> OidcFlow:
    svc = env.service(service)
    async def lock(_: httpx.Request) -> None:
        await using(service)

    provider = httpx.AsyncClient(base_url=svc.url, event_hooks={"request": [lock]}, verify=tls.context(),
                                 timeout=httpx.Timeout(env.timeouts.request_s, connect=env.timeouts.connect_s))
    meta = expect(await provider.get("/.well-known/openid-configuration"), 200, "OIDC discovery").json()
    scriptable = SCRIPTABLE_MARKER in (await provider.get("/")).text
    return OidcFlow(env, auth, provider, meta, scriptable)
