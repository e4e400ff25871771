"""OpenID Connect relying party: authorization code + PKCE (S256), state and nonce.

The login request's state, nonce and code verifier wait in Redis (single use, 10 minutes);
the callback takes them out atomically, so a state cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from redis.asyncio import Redis

from app.common.settings import AuthSettings

STATE_TTL_S = 600
DISCOVERY_TTL_S = 300
# Only asymmetric algorithms: an HS256 ID token would be "signed" with our client secret.
ACCEPTED_ALGS = {"RS256", "RS384", "RS512", "ES256", "ES384", "PS256"}


class OidcError(Exception):
    def __init__(self, error: str, detail: str):
        super().__init__(detail)
        self.error, self.detail = error, detail


@dataclass(frozen=True)
class Identity:
    issuer: str
    subject: str
    email: str | None
    email_verified: bool


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcClient:
    def __init__(self, settings: AuthSettings, http: httpx.AsyncClient, redis: Redis):
        assert settings.oidc_provider_url and settings.oidc_client_id
        self.s = settings
        self.base = settings.oidc_provider_url.rstrip("/")
        self.http = http
        self.redis = redis
        self._discovery: tuple[float, dict[str, Any]] | None = None
        self._jwks: dict[str, Any] = {}

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None or time.monotonic() - self._discovery[0] > DISCOVERY_TTL_S:
            r = await self.http.get(f"{self.base}/.well-known/openid-configuration")
            r.raise_for_status()
            self._discovery = (time.monotonic(), r.json())
        return self._discovery[1]

    async def authorization_url(self, redirect_uri: str) -> str:
        meta = await self.discovery()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        await self.redis.set(f"auth:oidc:state:{state}", json.dumps(
            {"nonce": nonce, "verifier": verifier, "redirect_uri": redirect_uri}), ex=STATE_TTL_S)
        params = {"response_type": "code", "client_id": self.s.oidc_client_id, "redirect_uri": redirect_uri,
                  "scope": self.s.oidc_scopes, "state": state, "nonce": nonce,
                  "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
                  "code_challenge_method": "S256"}
        return f"{meta['authorization_endpoint']}?{urlencode(params)}"

    async def complete(self, code: str, state: str) -> Identity:
        raw = await self.redis.getdel(f"auth:oidc:state:{state}")
        if raw is None:
            raise OidcError("invalid_state", "unknown, expired or already used state")
        pending = json.loads(raw)
        meta = await self.discovery()
        secret = self.s.secret("oidc_client_secret") or ""
        r = await self.http.post(meta["token_endpoint"], auth=(self.s.oidc_client_id or "", secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": pending["redirect_uri"],
            "code_verifier": pending["verifier"]})
        if r.status_code != 200:
            reason = r.json().get("error", r.status_code) if "json" in r.headers.get("content-type", "") else r.status_code
            raise OidcError("code_exchange_failed", f"the provider refused the code: {reason}")
        id_token = r.json().get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("invalid_id_token", "the provider returned no ID token")
        claims = await self._validate(id_token, meta)
        if claims.get("nonce") != pending["nonce"]:
            raise OidcError("invalid_id_token", "ID token nonce does not match the login request")
        return Identity(meta["issuer"], str(claims["sub"]), claims.get("email"), claims.get("email_verified") is True)

    async def _validate(self, id_token: str, meta: dict[str, Any]) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcError("invalid_id_token", "malformed ID token") from None
        alg = header.get("alg")
        allowed = ACCEPTED_ALGS & set(meta.get("id_token_signing_alg_values_supported", ["RS256"]))
        if alg not in allowed:
            raise OidcError("invalid_id_token", f"ID token algorithm {alg!r} not accepted")
        key = await self._key(header.get("kid"), meta)
        try:
            return jwt.decode(id_token, key, algorithms=[alg], audience=self.s.oidc_client_id,
                              issuer=meta["issuer"], leeway=30, options={"require": ["exp", "iat", "sub"]})
        except jwt.PyJWTError as e:
            raise OidcError("invalid_id_token", f"ID token rejected: {e}") from None

    async def _key(self, kid: str | None, meta: dict[str, Any]) -> Any:
        for refetch in (False, True):
            if refetch or not self._jwks:
                r = await self.http.get(meta["jwks_uri"])
                r.raise_for_status()
                self._jwks = {k.get("kid"): k for k in r.json()["keys"]}
            jwk = self._jwks.get(kid) or (next(iter(self._jwks.values())) if kid is None and len(self._jwks) == 1
                                          else None)
            if jwk is not None:
                return jwt.PyJWK(jwk).key
        raise OidcError("invalid_id_token", "ID token signed by a key the provider does not publish")
