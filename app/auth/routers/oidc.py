"""OIDC login: redirect to the provider, then take the callback to a session of our own.

First login creates the user (role member); later logins find them by (issuer, subject).
An existing password account is linked only when the provider vouches for the email.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import grants, users
from app.auth.context import Context
from app.auth.deps import actor, ctx
from app.common.errors import ApiError
from app.auth.models import oidc_identities
from app.auth.oidc import Identity, OidcClient, OidcError
from app.auth.roles import DEFAULT_ROLE

router = APIRouter(prefix="/auth/oidc", tags=["oidc"])


def client(request: Request) -> OidcClient:
    oidc = request.app.state.oidc
    if oidc is None:
        raise ApiError(404, "oidc_disabled", "OIDC login is not configured")
    return oidc


@router.get("/login")
async def login(request: Request, oidc: OidcClient = Depends(client), c: Context = Depends(ctx)) -> RedirectResponse:
    redirect_uri = c.settings.oidc_redirect_uri or str(request.url_for("oidc_callback"))
    return RedirectResponse(await oidc.authorization_url(redirect_uri), status_code=302)


async def _user_for(conn: AsyncConnection, ident: Identity) -> users.User:
    key = (oidc_identities.c.issuer == ident.issuer) & (oidc_identities.c.subject == ident.subject)
    row = (await conn.execute(select(oidc_identities.c.user_id).where(key))).first()
    if row is not None:
        await conn.execute(update(oidc_identities).where(key).values(last_login_at=func.now()))
        user = await users.by_id(conn, row.user_id)
        assert user is not None  # the FK cascades identities away with their user
        return user
    if not ident.email:
        raise ApiError(400, "oidc_no_email", "the provider gave no email for this account")
    user = await users.by_email(conn, ident.email)
    if user is not None and not ident.email_verified:
        raise ApiError(409, "account_exists", "an account with this email exists; log in with its password")
    if user is None:
        user = await users.create(conn, ident.email, None, DEFAULT_ROLE)
    await conn.execute(oidc_identities.insert().values(issuer=ident.issuer, subject=ident.subject, user_id=user.id,
                                                       last_login_at=func.now()))
    return user


@router.get("/callback", name="oidc_callback")
async def callback(request: Request, code: str | None = None, state: str | None = None, error: str | None = None,
                   error_description: str | None = None, oidc: OidcClient = Depends(client),
                   c: Context = Depends(ctx)) -> dict[str, object]:
    if error:
        raise ApiError(400, "oidc_provider_error", f"the provider refused the login: {error}"
                       + (f" ({error_description[:200]})" if error_description else ""))
    if not code or not state:
        raise ApiError(400, "oidc_invalid_callback", "callback needs both code and state")
    try:
        ident = await oidc.complete(code, state)
    except OidcError as e:
        raise ApiError(400, f"oidc_{e.error}", e.detail) from None
    who = actor(request)
    try:
        async with c.db.begin() as conn:
            user = await _user_for(conn, ident)
            pair = await grants.open_session(c, conn, user, who.ip, who.user_agent, "oidc")
    except users.EmailTaken:
        raise ApiError(409, "account_exists", "an account with this email was created concurrently") from None
    await c.audit.record("oidc_login", who, user.id, user.email, issuer=ident.issuer)
    return {**pair.body(), "user": {"id": str(user.id), "email": user.email, "role": user.role}}
