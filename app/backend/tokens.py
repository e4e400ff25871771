"""Verify the auth service's JWTs locally: ES256 only, keys from auth's JWKS, then Redis for
revocation (auth's deny-list and its session keys), so a logout ends a token here at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jwt
from redis.asyncio import Redis

from app.backend.auth_client import AuthClient
from app.common import auth_keys
from app.common.errors import ApiError, unauthorized

ALGORITHM = "ES256"
REQUIRED = ["exp", "iat", "jti", "sub", "iss", "aud", "type"]
LEEWAY_S = 5


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
    def __init__(self, auth: AuthClient, redis: Redis, issuer: str, audience: str):
        self.auth, self.redis, self.issuer, self.audience = auth, redis, issuer, audience

    async def verify(self, token: str, expected: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise refused("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise refused(f"algorithm {header.get('alg')!r} not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise refused("token names no signing key")
        key = await self.auth.key(kid)
        if key is None:
            raise refused("unknown or retired signing key")
        try:
            claims = jwt.decode(token, key.key, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,
                                leeway=LEEWAY_S, options={"require": REQUIRED})
        except jwt.ExpiredSignatureError:
            raise refused("token expired") from None
        except jwt.InvalidAudienceError:
            raise refused("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise refused("wrong issuer") from None
        except jwt.PyJWTError:
            raise refused("invalid token") from None
        if claims["type"] != expected:
            raise refused(f"a {claims['type']} token is not accepted here")
        if await self.redis.exists(auth_keys.denied(claims["jti"])):
            raise refused("token revoked")
        sid = claims.get("sid")
        if expected == "access" and not (isinstance(sid, str) and await self.redis.exists(auth_keys.session(sid))):
            raise refused("session ended")
        return Principal(sub=str(claims["sub"]), type=claims["type"], role=str(claims.get("role", "")),
                         permissions=frozenset(claims.get("permissions", [])),
                         scopes=frozenset(str(claims.get("scope", "")).split()), session_id=sid,
                         jti=claims["jti"], exp=int(claims["exp"]), claims=claims)
