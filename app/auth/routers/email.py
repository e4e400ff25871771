"""Email verification, password reset by email, and the profile a new user completes.

Registration sends the verification email (account.register calls `send_verification`). A
link's token works once, before `email_token_ttl_s`; GET tells what using it would meet
without using it (the page the link opens), POST uses it. A password reset ends every session
of the account: whoever held one with the old password is out.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from app.auth import email_tokens, refresh, users
from app.auth.context import Context
from app.auth.deps import Claims, actor, ctx, user_claims
from app.auth.email_tokens import Status
from app.auth.schemas import EMAIL
from app.common.errors import ApiError, unauthorized

router = APIRouter(prefix="/auth", tags=["email"])
log = logging.getLogger("app.auth.email")

REFUSED = {Status.EXPIRED: (410, "token_expired", "this link has expired: ask for a new one"),
           Status.USED: (409, "token_used", "this link was already used"),
           Status.UNKNOWN: (400, "invalid_token", "this link is not valid")}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenBody(_Body):
    token: str = Field(min_length=1, max_length=200)


class ResetRequest(_Body):
    email: str = Field(pattern=EMAIL, max_length=254)


class ResetConfirm(_Body):
    token: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=256)


class Profile(_Body):
    display_name: str = Field(min_length=1, max_length=100)


def _refuse(status: Status) -> ApiError:
    code, reason, message = REFUSED[status]
    return ApiError(code, reason, message)


async def _send(c: Context, to: str, subject: str, text: str) -> bool:
    """Whether the relay took it; a failure is logged (without the token) and reported to the caller."""
    try:
        await c.mailer.send(to, subject, text)
        return True
    except Exception as e:  # the account change stands; the user can ask for the email again
        log.warning("email %r not sent: %s", subject, type(e).__name__)
        return False


async def send_verification(c: Context, user: users.User) -> bool:
    async with c.db.begin() as conn:
        token = await email_tokens.issue(conn, user.id, "verify", c.settings.email_token_ttl_s)
    link = f"{c.settings.app_url.rstrip('/')}/verify-email?token={token}"
    return await _send(c, user.email, "Verify your email address",
                       f"Welcome! Confirm this address to unlock teams, paid plans and your own model "
                       f"providers:\n\n{link}\n\nThe link works once, within "
                       f"{c.settings.email_token_ttl_s} seconds.\n")


@router.get("/verify-email")
async def verification_status(token: str, c: Context = Depends(ctx)) -> dict[str, str]:
    async with c.db.connect() as conn:
        status, _ = await email_tokens.peek(conn, token, "verify")
    return {"status": status.value}


@router.post("/verify-email")
async def verify(body: TokenBody, request: Request, c: Context = Depends(ctx)) -> dict[str, object]:
    async with c.db.begin() as conn:
        status, uid = await email_tokens.use(conn, body.token, "verify")
        if status is not Status.VALID or uid is None:
            raise _refuse(status)
        await users.mark_verified(conn, uid)
    await c.audit.record("email_verified", actor(request), uid)
    # Tokens issued before carry email_verified=false until the next login or refresh.
    return {"user_id": str(uid), "email_verified": True}


@router.post("/verify-email/resend", status_code=202)
async def resend(claims: Claims = Depends(user_claims), c: Context = Depends(ctx)) -> dict[str, bool]:
    async with c.db.connect() as conn:
        user = await users.by_id(conn, claims["sub"])
    if user is None:
        raise unauthorized("user no longer exists", "invalid_token")
    if user.email_verified:
        raise ApiError(409, "already_verified", "this email address is already verified")
    return {"email_sent": await send_verification(c, user)}


@router.post("/password-reset", status_code=202)
async def request_reset(body: ResetRequest, request: Request, c: Context = Depends(ctx)) -> dict[str, str]:
    """The same answer whether or not the address has an account (no account enumeration)."""
    async with c.db.connect() as conn:
        user = await users.by_email(conn, body.email)
    if user is not None:
        async with c.db.begin() as conn:
            token = await email_tokens.issue(conn, user.id, "reset", c.settings.email_token_ttl_s)
        link = f"{c.settings.app_url.rstrip('/')}/reset-password?token={token}"
        await _send(c, user.email, "Reset your password",
                    f"Someone asked to reset the password of this account. If it was you:\n\n{link}\n\n"
                    f"Resetting signs out every session. Otherwise ignore this email.\n")
        await c.audit.record("password_reset_requested", actor(request), user.id, user.email)
    return {"status": "if the address has an account, an email is on its way"}


@router.post("/password-reset/confirm", status_code=204)
async def confirm_reset(body: ResetConfirm, request: Request, c: Context = Depends(ctx)) -> Response:
    if len(body.new_password) < c.settings.password_min_length:
        raise ApiError(422, "validation_error", f"password: must be at least "
                       f"{c.settings.password_min_length} characters")
    hashed = await c.passwords.hash_async(body.new_password)
    async with c.db.begin() as conn:
        status, uid = await email_tokens.use(conn, body.token, "reset")
        if status is not Status.VALID or uid is None:
            raise _refuse(status)
        await users.set_password(conn, uid, hashed)
        # Following the emailed link proves the address: it is verified too.
        await users.mark_verified(conn, uid)
        ended = await refresh.revoke_user(conn, uid, "password_reset")
    for sid in ended:
        await c.sessions.delete(str(uid), str(sid))
    await c.audit.record("password_reset", actor(request), uid, sessions_ended=len(ended))
    return Response(status_code=204)


@router.patch("/users/me")
async def complete_profile(body: Profile, claims: Claims = Depends(user_claims),
                           c: Context = Depends(ctx)) -> dict[str, object]:
    async with c.db.begin() as conn:
        await users.set_display_name(conn, claims["sub"], body.display_name.strip())
        user = await users.by_id(conn, claims["sub"])
    if user is None:
        raise unauthorized("user no longer exists", "invalid_token")
    return {"id": str(user.id), "email": user.email, "display_name": user.display_name,
            "email_verified": user.email_verified}
