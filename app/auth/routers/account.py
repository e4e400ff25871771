"""Register, login, refresh, logout, password change, who-am-I, and deleting one's own account."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Request, Response

from app.auth import deletion, grants, refresh, users
from app.auth.context import Context
from app.auth.routers import email
from app.auth.deps import Claims, actor, ctx, user_claims
from app.common.errors import ApiError, unauthorized
from app.auth.roles import DEFAULT_ROLE, permissions
from app.auth.schemas import AccountDeletion, Credentials, PasswordChange, RefreshRequest
from app.common.jwt_rules import InvalidToken

router = APIRouter(prefix="/auth", tags=["account"])

# Unknown email and wrong password must be indistinguishable.
BAD_CREDENTIALS = "invalid email or password"


def _check_strength(c: Context, password: str) -> None:
    if len(password) < c.settings.password_min_length:
        raise ApiError(422, "validation_error", f"password: must be at least "
                       f"{c.settings.password_min_length} characters",
                       fields=[{"field": "password", "message": "too short"}])


@router.post("/register", status_code=201)
async def register(body: Credentials, request: Request, c: Context = Depends(ctx)) -> dict[str, object]:
    _check_strength(c, body.password)
    hashed = await c.passwords.hash_async(body.password)
    try:
        async with c.db.begin() as conn:
            user = await users.create(conn, body.email.strip(), hashed, DEFAULT_ROLE)
    except users.EmailTaken:
        raise ApiError(409, "email_taken", "an account with this email already exists") from None
    await c.audit.record("register", actor(request), user.id, user.email)
    sent = await email.send_verification(c, user)
    return {"id": str(user.id), "email": user.email, "role": user.role, "email_verified": False,
            "verification_email_sent": sent}


@router.post("/login")
async def login(body: Credentials, request: Request, c: Context = Depends(ctx)) -> dict[str, object]:
    who = actor(request)
    refusal = await c.limiter.admit(c.settings, body.email, who.ip)
    if refusal:
        await c.audit.record("login_failure", who, email=body.email, reason=refusal.reason, scope=refusal.scope)
        raise ApiError(429, refusal.reason, f"too many login attempts ({refusal.scope}); retry later",
                       headers={"Retry-After": str(refusal.retry_after_s)})
    async with c.db.connect() as conn:
        user = await users.by_email(conn, body.email)
    if not await c.passwords.verify_async(user.password_hash if user else None, body.password) or user is None:
        await c.limiter.failed(c.settings, body.email)
        await c.audit.record("login_failure", who, user.id if user else None, body.email, reason="bad_credentials")
        raise unauthorized(BAD_CREDENTIALS, "invalid_credentials")
    await c.limiter.succeeded(body.email)
    async with c.db.begin() as conn:
        pair = await grants.open_session(c, conn, user, who.ip, who.user_agent, "password")
    await c.audit.record("login_success", who, user.id, user.email, session_id=pair.session_id)
    return pair.body()


@router.post("/refresh")
async def rotate(body: RefreshRequest, request: Request, c: Context = Depends(ctx)) -> dict[str, object]:
    who = actor(request)
    try:
        claims = c.tokens.verify(body.refresh_token, "refresh")
    except InvalidToken as e:
        raise unauthorized(str(e), "invalid_token") from None
    if await c.deny.denied(claims["jti"]):
        raise unauthorized("token revoked", "invalid_token")
    sid, uid = claims["sid"], claims["sub"]
    async with c.db.begin() as conn:
        outcome = await refresh.use(conn, claims["jti"])
        user = await users.by_id(conn, uid)
        alive = await c.sessions.exists(sid)
        pair = None
        if outcome is refresh.Outcome.ROTATED and alive and user is not None:
            pair = await grants.issue_pair(c, conn, user, uuid.UUID(sid))
        elif outcome is refresh.Outcome.ROTATED:
            await refresh.revoke_family(conn, uuid.UUID(sid), "session_ended")
    if outcome is refresh.Outcome.REUSED:
        await c.sessions.delete(uid, sid)
        await c.audit.record("refresh_reuse_detected", who, uid, session_id=sid)
        raise unauthorized("refresh token reuse detected: the session is revoked", "token_reused")
    if pair is None:
        raise unauthorized("refresh token no longer valid", "invalid_token")
    await c.sessions.touch(sid, uid)
    await c.audit.record("refresh", who, uid, session_id=sid)
    return pair.body()


@router.post("/logout", status_code=204)
async def logout(request: Request, claims: Claims = Depends(user_claims), c: Context = Depends(ctx)) -> Response:
    await c.deny.deny(claims["jti"], claims["exp"])
    async with c.db.begin() as conn:
        await grants.close_session(c, conn, claims["sub"], claims["sid"], "logout")
    await c.audit.record("logout", actor(request), claims["sub"], session_id=claims["sid"])
    return Response(status_code=204)


@router.post("/password", status_code=204)
async def change_password(body: PasswordChange, request: Request, claims: Claims = Depends(user_claims),
                          c: Context = Depends(ctx)) -> Response:
    async with c.db.connect() as conn:
        user = await users.by_id(conn, claims["sub"])
    if user is None or not await c.passwords.verify_async(user.password_hash, body.current_password):
        raise unauthorized("current password is wrong", "invalid_credentials")
    _check_strength(c, body.new_password)
    hashed = await c.passwords.hash_async(body.new_password)
    async with c.db.begin() as conn:
        await users.set_password(conn, user.id, hashed)
        # Every other session ends: whoever knew the old password is logged out.
        ended = await refresh.revoke_user(conn, user.id, "password_change", keep=uuid.UUID(claims["sid"]))
    for sid in ended:
        await c.sessions.delete(str(user.id), str(sid))
    await c.audit.record("password_change", actor(request), user.id, user.email, sessions_ended=len(ended))
    return Response(status_code=204)


@router.get("/me")
async def me(claims: Claims = Depends(user_claims), c: Context = Depends(ctx)) -> dict[str, object]:
    async with c.db.connect() as conn:
        user = await users.by_id(conn, claims["sub"])
    if user is None:
        raise unauthorized("user no longer exists", "invalid_token")
    return {"id": str(user.id), "email": user.email, "role": user.role, "permissions": permissions(user.role),
            "session_id": claims["sid"], "token_role": claims["role"],
            "email_verified": user.email_verified, "display_name": user.display_name}


async def _reauthenticated(c: Context, user: users.User, claims: Claims, password: str | None, ip: str) -> None:
    """A token alone does not delete an account: its password must come along, counted like a
    login attempt (rate limit, lockout). An account without one (OIDC only) needs a session
    opened within `reauth_max_age_s`: its owner has just logged in again at the provider."""
    if user.password_hash is None:
        session = await c.sessions.get(claims["sid"])
        if session is None or time.time() - session.created_at > c.settings.reauth_max_age_s:
            raise unauthorized(f"log in again: an account without a password is deleted only within "
                               f"{c.settings.reauth_max_age_s} s of a login", "reauthentication_required")
        return
    if password is None:
        raise unauthorized("deleting an account needs its password", "reauthentication_required")
    refusal = await c.limiter.admit(c.settings, user.email, ip)
    if refusal:
        raise ApiError(429, refusal.reason, f"too many password attempts ({refusal.scope}); retry later",
                       headers={"Retry-After": str(refusal.retry_after_s)})
    if not await c.passwords.verify_async(user.password_hash, password):
        await c.limiter.failed(c.settings, user.email)
        raise unauthorized("the password is wrong", "invalid_credentials")


@router.delete("/users/me", status_code=202)
async def delete_me(request: Request, body: AccountDeletion | None = None, claims: Claims = Depends(user_claims),
                    c: Context = Depends(ctx)) -> dict[str, str]:
    """The caller's account and everything of theirs; the backend's share goes asynchronously."""
    who = actor(request)
    async with c.db.connect() as conn:
        user = await users.by_id(conn, claims["sub"])
    if user is None:
        raise unauthorized("user no longer exists", "invalid_token")
    await _reauthenticated(c, user, claims, body.password if body else None, who.ip)
    return deletion.accepted(await deletion.delete_user(c, user, who, by=str(user.id), how="self"))
