"""authlib's grant and endpoints, configured to refuse what real providers refuse."""

from __future__ import annotations

import hmac
import time
from typing import Any

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    scope_to_list,
)
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint, InvalidClientMetadataError
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN
from authlib.oidc.core import OpenIDCode, UserInfo, UserInfoEndpoint

from standins.oidc.models import AuthorizationCode, Client, Token, User, secret_hash
from standins.oidc.provider import ALG, Provider


class S256Pkce(CodeChallenge):
    """PKCE for every client, S256 only (RFC 9700 2.1.1: `plain` is not to be used)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: AuthorizationCodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: the request has no 'code_challenge'")
        # Without a method RFC 7636 means `plain`, which is refused like an explicit one.
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: AuthorizationCodeGrant, result: Any) -> None:
        verifier = grant.request.form.get("code_verifier")
        code: AuthorizationCode = grant.request.authorization_code
        if not verifier:
            raise InvalidGrantError("Missing 'code_verifier': the code was issued to a PKCE request")
        if not (CODE_VERIFIER_PATTERN.match(verifier)
                and hmac.compare_digest(create_s256_code_challenge(verifier), code.code_challenge)):
            raise InvalidGrantError("'code_verifier' does not match the code's 'code_challenge'")


class CodeGrant(AuthorizationCodeGrant):
    server: Provider

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        if "openid" not in (scope_to_list(self.request.scope) or []):
            raise InvalidScopeError("this provider serves OpenID Connect only: the scope must include 'openid'",
                                    redirect_uri=redirect_uri)
        return redirect_uri

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        now = time.time()
        self.server.store.save_code(AuthorizationCode(
            code=code, client_id=request.client.get_client_id(), redirect_uri=request.payload.redirect_uri,
            scope=request.scope, nonce=data["nonce"], code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"], sub=request.user.sub, auth_time=int(now),
            expires_at=now + self.server.settings.code_ttl_s))

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        return self.server.store.take_code(code, client.client_id)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing left to do: `take_code` spent it."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User:
        return User(authorization_code.sub)


class IdToken(OpenIDCode):
    """The ID token of a code exchange: RS256 with the published key, the request's nonce."""

    def __init__(self, provider: Provider):
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self.provider.store.nonce_used(request.payload.client_id, nonce)

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.provider.store.key

    def get_client_algorithm(self, client: Client) -> str:
        return ALG

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": ALG, "kid": self.provider.store.key.kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.provider.issuer, "aud": client.client_id, "iat": now,
                "exp": now + self.provider.settings.token_ttl_s}

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return user.info(scope)


class AccessTokens(BearerTokenValidator):
    def __init__(self, provider: Provider):
        super().__init__()
        self.provider = provider

    def authenticate_token(self, token_string: str) -> Token | None:
        return self.provider.store.token(token_string)


class UserInfoFromToken(UserInfoEndpoint):
    server: Provider

    def get_issuer(self) -> str:
        return self.server.issuer

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return user.info(scope)


class Registration(ClientRegistrationEndpoint):
    """RFC 7591 dynamic registration, open only to the initial access token."""

    server: Provider

    def authenticate_token(self, request: OAuth2Request) -> bool:
        expected = self.server.settings.secret("registration_token") or ""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if expected and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode()):
            return True
        raise InvalidTokenError("registration needs the initial access token as a bearer token")

    def get_server_metadata(self) -> dict[str, Any]:
        return self.server.metadata()

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any],
                    request: OAuth2Request) -> Client:
        uris = client_metadata.get("redirect_uris")
        if not uris:
            raise InvalidClientMetadataError("'redirect_uris' is required: the code flow redirects")
        client = Client(client_info["client_id"], secret_hash(client_info["client_secret"]), tuple(uris),
                        client_metadata["token_endpoint_auth_method"], client_metadata.get("client_name", ""),
                        registered_at=client_info["client_id_issued_at"])
        self.server.store.register(client)
        return client
