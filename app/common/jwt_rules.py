"""The rules every verifier of the platform's tokens applies (auth itself, the backend):
ES256 only, a `kid`, the issuer and audience, the required claims, the token type.

The algorithm is pinned before anything else, so `alg: none` and HS256-signed-with-the-
public-key tokens are refused whatever their header says.
"""

from __future__ import annotations

from typing import Any

import jwt

ALGORITHM = "ES256"
REQUIRED = ["exp", "iat", "jti", "sub", "iss", "aud", "type"]


class InvalidToken(Exception):
    """Why a token was refused; the message is safe to show the caller."""


def signing_kid(token: str) -> str:
    """The kid of a token that claims the one accepted algorithm."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None
    if header.get("alg") != ALGORITHM:
        raise InvalidToken(f"algorithm {header.get('alg')!r} not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("unknown or retired signing key")
    return kid


def decode(token: str, key: Any, issuer: str, audience: str, expected: str | tuple[str, ...],
           leeway_s: float) -> dict[str, Any]:
    """The verified claims, or InvalidToken saying which rule the token broke."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=audience, issuer=issuer,
                            leeway=leeway_s, options={"require": REQUIRED})
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
