"""The authorization server: authlib's, holding the provider's settings, issuer and state,
and the discovery document that describes it."""

from __future__ import annotations

import time
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from flask import Flask, request

from standins.oidc.models import SCOPES, Token
from standins.oidc.settings import OidcStandinSettings
from standins.oidc.store import Store

ALG = "RS256"


class Provider(AuthorizationServer):
    def __init__(self, app: Flask, settings: OidcStandinSettings, issuer: str | None, store: Store):
        self.settings, self.store, self._issuer = settings, store, issuer
        super().__init__(app, query_client=store.client, save_token=self._save_token)

    @property
    def issuer(self) -> str:
        """The configured issuer; without one, the URL this request reached it at (a provider
        reached under two names, as in docker-compose, is then each name's own issuer)."""
        return self._issuer or request.host_url.rstrip("/")

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        self.store.save_token(Token(token["access_token"], req.client, req.user.sub, token["scope"],
                                    time.time(), token["expires_in"]), req.authorization_code)

    def metadata(self) -> dict[str, Any]:
        """The discovery document (OpenID Connect Discovery 1.0, section 3)."""
        meta = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALG],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "email"],
        }
        if self.settings.registration_token is not None:
            meta["registration_endpoint"] = f"{self.issuer}/register"
        return meta
