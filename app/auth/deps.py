"""FastAPI dependencies: the context, the caller's identity, permission and scope checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from ipaddress import ip_address, ip_network
from typing import Any

from fastapi import Depends, Request

from app.auth.audit import Actor
from app.auth.context import Context
from app.common.bearer import bearer_token
from app.common.pool import acting_as
from app.common.errors import ApiError, unauthorized
from app.common.jwt_rules import InvalidToken

Claims = dict[str, Any]


def ctx(request: Request) -> Context:
    return request.app.state.ctx


def _trusted(peer: str, proxies: list[str]) -> bool:
    """Whether `peer` is one of the trusted proxies (addresses or networks such as a compose bridge)."""
    try:
        addr = ip_address(peer)
    except ValueError:
        return False
    return any(addr in ip_network(p, strict=False) for p in proxies)


def client_ip(request: Request) -> str:
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and _trusted(peer, request.app.state.ctx.settings.trusted_proxies):
        candidate = forwarded.split(",")[-1].strip()
        try:
            return str(ip_address(candidate))
        except ValueError:
            pass
    return peer


def actor(request: Request) -> Actor:
    return Actor(ip=client_ip(request), user_agent=request.headers.get("user-agent", ""))


def bearer(request: Request) -> str:
    return bearer_token(request, "auth")


async def live_claims(c: Context, token: str, expected: str | tuple[str, ...]) -> Claims:
    """Signature, claims, deny-list and (for user tokens) a session that still exists."""
    try:
        claims = c.tokens.verify(token, expected)  # type: ignore[arg-type]
    except InvalidToken as e:
        raise unauthorized(str(e), "invalid_token") from None
    if await c.deny.denied(claims["jti"]):
        raise unauthorized("token revoked", "invalid_token")
    if claims["type"] != "service" and not await c.sessions.exists(claims.get("sid", "")):
        raise unauthorized("session ended", "invalid_token")
    return claims


async def user_claims(request: Request) -> Claims:
    claims = await live_claims(ctx(request), bearer(request), "access")
    acting_as.set(claims["sub"])  # the role audit trigger names this user as the actor of the request's changes
    return claims


def require_permission(permission: str) -> Callable[..., Awaitable[Claims]]:
    async def check(claims: Claims = Depends(user_claims)) -> Claims:
        if permission not in claims.get("permissions", []):
            raise ApiError(403, "forbidden", f"requires permission {permission!r}")
        return claims

    return check


def require_scope(scope: str) -> Callable[..., Awaitable[Claims]]:
    async def check(request: Request) -> Claims:
        claims = await live_claims(ctx(request), bearer(request), "service")
        if scope not in claims.get("scope", "").split():
            raise ApiError(403, "insufficient_scope", f"requires scope {scope!r}")
        return claims

    return check
