"""Issue and verify ES256 JWTs against the key ring.

Verification pins the algorithm to ES256 before anything else, so `alg: none` and
HS256-signed-with-the-public-key tokens are refused whatever their header says.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from app.auth.keys import KeyRing

TokenType = Literal["access", "refresh", "service"]
ALGORITHM = "ES256"
REQUIRED = ["exp", "iat", "jti", "sub", "iss", "aud", "type"]


class InvalidToken(Exception):
    """Why a token was refused; the message is safe to show the caller."""


@dataclass(frozen=True)
class Issued:
    token: str
    claims: dict[str, Any]


class TokenService:
    def __init__(self, keys: KeyRing, issuer: str, audience: str, leeway_s: int = 5):
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s

    def issue(self, sub: str, type_: TokenType, ttl_s: int, **claims: Any) -> Issued:
        key = self.keys.active()
        now = int(time.time())
        body = {"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "exp": now + ttl_s,
                "jti": str(uuid.uuid4()), "type": type_, **claims}
        token = jwt.encode(body, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})
        return Issued(token, body)

    def verify(self, token: str, expected: TokenType | tuple[TokenType, ...]) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"algorithm {header.get('alg')!r} not accepted")
        kid = header.get("kid")
        key = self.keys.verifying(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown or retired signing key")
        try:
            claims = jwt.decode(token, key.public, algorithms=[ALGORITHM], audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway_s, options={"require": REQUIRED})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong issuer") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid token") from None
        allowed = (expected,) if isinstance(expected, str) else expected
        if claims["type"] not in allowed:
            raise InvalidToken(f"a {claims['type']} token is not accepted here")
        return claims
