"""Redis keys the auth service writes and the backend reads, so a logout or a revoked session
ends a token everywhere at once without a call to auth."""

from __future__ import annotations


def denied(jti: str) -> str:
    return f"auth:denied:{jti}"


def session(sid: str) -> str:
    return f"auth:session:{sid}"


# Auth announces each signing-key change here ({"change": "rotated"|"retired", "kid": ...}); every
# backend drops its cached JWKS at once instead of serving a retired key until the cache expires.
SIGNING_KEYS_CHANNEL = "auth:signing_keys"
