"""Service-to-service: client credentials -> scoped service token; token introspection."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.auth import service_clients, users
from app.auth.context import Context
from app.auth.deps import Claims, actor, ctx, live_claims, require_scope
from app.common.errors import ApiError, unauthorized
from app.auth.schemas import IntrospectRequest, ServiceTokenRequest

router = APIRouter(prefix="/auth", tags=["service"])


@router.post("/service-token")
async def service_token(body: ServiceTokenRequest, request: Request, c: Context = Depends(ctx)) -> dict[str, object]:
    async with c.db.connect() as conn:
        allowed = await service_clients.authenticate(conn, c.passwords, body.client_id, body.client_secret)
    if allowed is None:
        allowed = service_clients.previous_secret_scopes(c.settings, body.client_id, body.client_secret)
    if allowed is None:
        raise unauthorized("invalid client credentials", "invalid_client")
    wanted = body.scope.split() if body.scope else allowed
    if extra := sorted(set(wanted) - set(allowed)):
        raise ApiError(403, "invalid_scope", f"scope not allowed for this client: {' '.join(extra)}")
    ttl = c.settings.service_ttl_s
    issued = c.tokens.issue(f"service:{body.client_id}", "service", ttl, role="service",
                            permissions=wanted, scope=" ".join(wanted))
    await c.audit.record("service_token", actor(request), client=body.client_id, scope=" ".join(wanted))
    return {"access_token": issued.token, "token_type": "Bearer", "expires_in": ttl, "scope": " ".join(wanted)}


@router.post("/introspect")
async def introspect(body: IntrospectRequest, _: Claims = Depends(require_scope("auth:introspect")),
                     c: Context = Depends(ctx)) -> dict[str, object]:
    """RFC 7662-style: `active` plus the claims, and a user token's current email (what the
    backend holds a team invitation's addressee to); revocation and ended sessions count as inactive."""
    try:
        claims = await live_claims(c, body.token, ("access", "refresh", "service"))
    except ApiError as e:
        return {"active": False, "reason": e.detail}
    if claims["type"] != "service":
        async with c.db.connect() as conn:
            user = await users.by_id(conn, claims["sub"])
        if user is None:
            return {"active": False, "reason": "user deleted"}
        claims = {**claims, "email": user.email}
    return {"active": True, **claims}

