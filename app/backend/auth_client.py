"""Everything the backend asks the auth service, each call through one circuit breaker.

- JWKS: cached; refreshed after `jwks_ttl_s`, when auth announces a key change
  (app.backend.key_changes), or early when a token names an unknown kid (at most once per
  `jwks_min_refresh_s`). While auth is unreachable the cached keys keep
  verifying, so logged-in users carry on; only a kid the cache has never seen needs auth.
- A service token for the backend's own client credentials, cached until shortly before it
  expires, used to introspect user tokens for actions that must be checked online.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from app.common.breaker import BreakerOpen, CircuitBreaker, PeerFailure
from app.common.errors import ApiError
from app.common.settings import BackendSettings

SERVICE_TOKEN_MARGIN_S = 30


def auth_unavailable(reason: str, retry_after_s: float = 5) -> ApiError:
    return ApiError(503, "dependency_unavailable", f"auth is unavailable ({reason})", dependency="auth",
                    headers={"Retry-After": str(max(1, round(retry_after_s)))})


class AuthClient:
    def __init__(self, settings: BackendSettings, http: httpx.AsyncClient, breaker: CircuitBreaker):
        self.s = settings
        self.base = settings.auth_url.rstrip("/")
        self.http = http
        self.breaker = breaker
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._stale = False  # auth announced a key change since the last fetch began
        self._changes = 0
        self._refresh_lock = asyncio.Lock()
        self._service_token: tuple[str, float] | None = None

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            resp = await self.http.request(method, f"{self.base}{path}", timeout=self.s.auth_timeout_s, **kwargs)
            if resp.status_code >= 500:
                raise PeerFailure(f"auth answered {resp.status_code} to {method} {path}")
            return resp

        try:
            return await self.breaker.call(send)
        except BreakerOpen as e:
            raise auth_unavailable("circuit breaker open", e.retry_after_s) from None
        except PeerFailure as e:
            raise auth_unavailable(str(e)) from None
        except (httpx.TransportError, OSError, TimeoutError) as e:
            raise auth_unavailable(type(e).__name__) from None

    # -- JWKS -----------------------------------------------------------------------------------

    @property
    def jwks_age_s(self) -> float | None:
        return None if self._fetched_at is None else time.monotonic() - self._fetched_at

    @property
    def cached_kids(self) -> list[str]:
        return sorted(self._keys)

    async def refresh_jwks(self) -> None:
        changes = self._changes
        resp = await self._request("GET", "/.well-known/jwks.json")
        if resp.status_code != 200:
            raise auth_unavailable(f"JWKS answered {resp.status_code}")
        keys = {}
        for jwk in resp.json().get("keys", []):
            if isinstance(jwk.get("kid"), str) and jwk.get("kty") == "EC":
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="ES256")
        # A change announced while this fetch was on its way may not be in what auth sent.
        self._keys, self._fetched_at, self._stale = keys, time.monotonic(), changes != self._changes

    def forget_jwks(self, retired: str | None = None) -> None:
        """The next verification refetches the JWKS; a `retired` kid stops verifying now, even
        while auth cannot be reached (the other cached keys keep verifying then)."""
        self._stale, self._changes = True, self._changes + 1
        if retired is not None:
            self._keys.pop(retired, None)

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The verifying key for `kid`, or None when auth does not publish it (any more)."""
        age = self.jwks_age_s
        stale = self._stale or age is None or age > self.s.jwks_ttl_s
        unknown = kid not in self._keys and (age is None or age >= self.s.jwks_min_refresh_s)
        if stale or unknown:
            async with self._refresh_lock:
                age = self.jwks_age_s  # another request may have refreshed while this one waited
                if self._stale or age is None or age > self.s.jwks_ttl_s or (kid not in self._keys
                                                               and age >= self.s.jwks_min_refresh_s):
                    try:
                        await self.refresh_jwks()
                    except ApiError:
                        # Stale keys still verify while auth is away; a kid never seen cannot.
                        if kid not in self._keys:
                            raise
        return self._keys.get(kid)

    # -- service-to-service ---------------------------------------------------------------------

    async def service_token(self) -> str:
        cached = self._service_token
        if cached and cached[1] - SERVICE_TOKEN_MARGIN_S > time.monotonic():
            return cached[0]
        secret = self.s.secret("service_client_secret") or ""
        resp = await self._request("POST", "/auth/service-token", json={
            "client_id": self.s.service_client_id, "client_secret": secret, "scope": "auth:introspect"})
        if resp.status_code != 200:
            # Our own credentials refused: a configuration error, not an outage of auth.
            raise ApiError(502, "upstream_refused", f"auth refused the backend's service credentials "
                           f"({resp.status_code})")
        body = resp.json()
        self._service_token = (body["access_token"], time.monotonic() + int(body["expires_in"]))
        return body["access_token"]

    async def introspect(self, token: str) -> dict[str, Any]:
        service_token = await self.service_token()
        resp = await self._request("POST", "/auth/introspect", json={"token": token},
                                   headers={"Authorization": f"Bearer {service_token}"})
        if resp.status_code == 401:
            self._service_token = None  # rotated or revoked: fetch a new one next time
        if resp.status_code != 200:
            raise ApiError(502, "upstream_refused", f"auth refused the introspection ({resp.status_code})")
        return resp.json()
