"""What authlib's authorization server asks of clients, codes and tokens (its mixins)."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, scope_to_list
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo

SCOPES = ("openid", "email", "profile")


def secret_hash(secret: str) -> str:
    """Client secrets are kept hashed, as a real provider keeps them."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    """Whoever the consent form logged in: `email` is `sub`, never marked verified."""

    sub: str

    def info(self, scope: str) -> UserInfo:
        claims = {"sub": self.sub}
        if "email" in scope_to_list(scope):
            claims["email"] = self.sub
        return UserInfo(claims)


@dataclass
class Client(ClientMixin):
    client_id: str
    secret_sha256: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str = "client_secret_basic"
    name: str = ""
    registered_at: float = 0.0  # 0: configured, not registered
    last_used: float = field(default_factory=time.time)

    @property
    def client_metadata(self) -> dict[str, object]:
        """RFC 7591 metadata; nothing asks for signed userinfo, so userinfo answers plain JSON."""
        return {"redirect_uris": list(self.redirect_uris), "token_endpoint_auth_method": self.token_endpoint_auth_method,
                "client_name": self.name}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # OpenID Connect requires redirect_uri in every authentication request.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in scope_to_list(scope or "") or [] if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison (OpenID Connect Core 3.1.2.1): no prefix, no normalisation.
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(secret_hash(client_secret), self.secret_sha256)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str
    code_challenge: str
    code_challenge_method: str
    sub: str
    auth_time: int
    expires_at: float
    spent: bool = False
    tokens: list[str] = field(default_factory=list)  # what its exchange bought: revoked if it is replayed

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass
class Token(TokenMixin):
    access_token: str
    client: Client
    sub: str
    scope: str
    issued_at: float
    expires_in: int
    revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> User:
        return User(self.sub)

    def get_client(self) -> Client:
        return self.client
