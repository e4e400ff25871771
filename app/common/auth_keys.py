"""Redis keys the auth service writes and the backend reads, so a logout or a revoked session
ends a token everywhere at once without a call to auth."""

from __future__ import annotations


def denied(jti: str) -> str:
    return f"auth:denied:{jti}"


def session(sid: str) -> str:
    return f"auth:session:{sid}"
