"""OIDC login: redirect to the provider, then take the callback to a session of our own.

First login creates the user (role member); later logins find them by (issuer, subject).
An existing password account is linked only when the provider vouches for the email.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from app.auth import grants, users
from app.auth.context import Context
from app.auth.deps import actor, ctx
from app.common.errors import ApiError
from app.auth.oidc import OidcClient, OidcError
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
            user = await users.for_identity(conn, ident.issuer, ident.subject, ident.email, ident.email_verified,
                                            DEFAULT_ROLE)
            pair = await grants.open_session(c, conn, user, who.ip, who.user_agent, "oidc")
    except users.NoEmail:
        raise ApiError(400, "oidc_no_email", "the provider gave no email for this account") from None
    except users.UnverifiedEmailTaken:
        raise ApiError(409, "account_exists", "an account with this email exists; log in with its password") from None
    except users.EmailTaken:
        raise ApiError(409, "account_exists", "an account with this email was created concurrently") from None
    await c.audit.record("oidc_login", who, user.id, user.email, issuer=ident.issuer)
    return {**pair.body(), "user": {"id": str(user.id), "email": user.email, "role": user.role}}
