"""FastAPI dependencies: the context, and the caller as a verified `Principal` with a
permission (users) or scope (services) checked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request

from app.backend.context import Context
from app.backend.tokens import Principal
from app.common.bearer import bearer_token
from app.common.pool import acting_as
from app.common.errors import ApiError


def ctx(request: Request) -> Context:
    return request.app.state.ctx


def bearer(request: Request) -> str:
    return bearer_token(request, "backend", "invalid_token")


def require_permission(permission: str) -> Callable[..., Awaitable[Principal]]:
    async def check(request: Request, c: Context = Depends(ctx)) -> Principal:
        who = await c.verifier.verify(bearer(request), "access")
        if permission not in who.permissions:
            raise ApiError(403, "forbidden", f"requires permission {permission!r} (role {who.role!r} lacks it)")
        acting_as.set(who.sub)  # the audit triggers name this user as the actor of the request's changes
        return who

    return check


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    async def check(request: Request, c: Context = Depends(ctx)) -> Principal:
        who = await c.verifier.verify(bearer(request), "service")
        if scope not in who.scopes:
            raise ApiError(403, "insufficient_scope", f"requires scope {scope!r}")
        return who

    return check
