"""Verify the auth service's JWTs locally by the shared rules (`app.common.jwt_rules`) with keys
from auth's JWKS, then Redis for revocation (auth's deny-list and its session keys), so a
logout ends a token here at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from app.backend.auth_client import AuthClient
from app.common import auth_keys
from app.common.errors import ApiError, unauthorized
from app.common.jwt_rules import InvalidToken, decode, signing_kid


def refused(detail: str) -> ApiError:
    return unauthorized(detail, "invalid_token", realm="backend")


@dataclass(frozen=True)
class Principal:
    """Who is calling, from a verified token: a user (access token) or a service."""

    sub: str
    type: str
    role: str
    permissions: frozenset[str]
    scopes: frozenset[str]
    session_id: str | None
    jti: str
    exp: int
    claims: dict[str, Any] = field(repr=False, compare=False)


class TokenVerifier:
    def __init__(self, auth: AuthClient, redis: Redis, issuer: str, audience: str, leeway_s: float):
        self.auth, self.redis, self.issuer, self.audience = auth, redis, issuer, audience
        self.leeway_s = leeway_s

    async def verify(self, token: str, expected: str) -> Principal:
        try:
            key = await self.auth.key(signing_kid(token))
            if key is None:
                raise InvalidToken("unknown or retired signing key")
            claims = decode(token, key.key, self.issuer, self.audience, expected, self.leeway_s)
        except InvalidToken as e:
            raise refused(str(e)) from None
        if await self.redis.exists(auth_keys.denied(claims["jti"])):
            raise refused("token revoked")
        sid = claims.get("sid")
        if expected == "access" and not (isinstance(sid, str) and await self.redis.exists(auth_keys.session(sid))):
            raise refused("session ended")
        return Principal(sub=str(claims["sub"]), type=claims["type"], role=str(claims.get("role", "")),
                         permissions=frozenset(claims.get("permissions", [])),
                         scopes=frozenset(str(claims.get("scope", "")).split()), session_id=sid,
                         jti=claims["jti"], exp=int(claims["exp"]), claims=claims)
