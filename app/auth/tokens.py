"""Issue ES256 JWTs with the key ring's active key, and verify them by the shared rules."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from app.auth.keys import KeyRing
from app.common.jwt_rules import ALGORITHM, InvalidToken, decode, signing_kid

TokenType = Literal["access", "refresh", "service"]


@dataclass(frozen=True)
class Issued:
    token: str
    claims: dict[str, Any]


class TokenService:
    def __init__(self, keys: KeyRing, issuer: str, audience: str, leeway_s: float):
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
        key = self.keys.verifying(signing_kid(token))
        if key is None:
            raise InvalidToken("unknown or retired signing key")
        return decode(token, key.public, self.issuer, self.audience, expected, self.leeway_s)
