"""The token in an `Authorization: Bearer <token>` header, or a 401 that says what is wrong."""

from __future__ import annotations

from fastapi import Request

from app.common.errors import unauthorized


def bearer_token(request: Request, realm: str, error: str = "unauthorized") -> str:
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized("missing Authorization header", error, realm)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authorization must be 'Bearer <token>'", error, realm)
    return token.strip()
