"""Admin actions: change a user's role, delete a user, rotate and retire signing keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.auth import deletion, key_changes, users
from app.auth.context import Context
from app.auth.deps import Claims, actor, ctx, require_permission
from app.common.errors import ApiError
from app.auth.keys import KeyRingError
from app.auth.roles import may_assign, may_delete
from app.auth.schemas import RoleChange

router = APIRouter(prefix="/auth/admin", tags=["admin"])


@router.patch("/users/{user_id}/role")
async def change_role(user_id: str, body: RoleChange, request: Request,
                      claims: Claims = Depends(require_permission("users:role")),
                      c: Context = Depends(ctx)) -> dict[str, str]:
    async with c.db.begin() as conn:
        user = await users.by_id(conn, user_id)
        if user is None:
            raise ApiError(404, "not_found", "no such user")
        if not may_assign(claims["role"], user.role, body.role):
            raise ApiError(403, "forbidden", "only an owner grants or removes the owner role")
        await users.set_role(conn, user.id, body.role)
    await c.audit.record("role_change", actor(request), user.id, user.email, by=claims["sub"],
                         old_role=user.role, new_role=body.role)
    # Tokens already issued keep their role until they expire; the next refresh carries the new one.
    return {"id": str(user.id), "email": user.email, "role": body.role}


@router.delete("/users/{user_id}", status_code=202)
async def delete_user(user_id: str, request: Request, claims: Claims = Depends(require_permission("users:delete")),
                      c: Context = Depends(ctx)) -> dict[str, str]:
    """Another user's account and everything of theirs (audited with who did it)."""
    async with c.db.connect() as conn:
        user = await users.by_id(conn, user_id)
    if user is None:
        raise ApiError(404, "not_found", "no such user")
    if not may_delete(claims["role"], user.role):
        raise ApiError(403, "forbidden", "only an owner deletes an owner")
    return deletion.accepted(await deletion.delete_user(c, user, actor(request), by=claims["sub"], how="admin"))


@router.get("/keys")
async def list_keys(_: Claims = Depends(require_permission("keys:rotate")),
                    c: Context = Depends(ctx)) -> dict[str, object]:
    active = c.keys.active().kid
    return {"active": active, "keys": [{"kid": k.kid, "created": k.created, "not_before": k.not_before,
                                        "retired": k.retired} for k in c.keys.all()]}


@router.post("/keys/rotate")
async def rotate_key(request: Request, claims: Claims = Depends(require_permission("keys:rotate")),
                     c: Context = Depends(ctx)) -> dict[str, object]:
    """The new key is published now and signs from `signs_from` (after the activation delay)."""
    key = c.keys.rotate(c.settings.key_activation_delay_s)
    await c.audit.record("key_rotated", actor(request), claims["sub"], kid=key.kid)
    await key_changes.announce(c.redis, "rotated", key.kid)
    return {"kid": key.kid, "signs_from": key.not_before, "active": c.keys.active().kid}


@router.post("/keys/{kid}/retire")
async def retire_key(kid: str, request: Request, claims: Claims = Depends(require_permission("keys:rotate")),
                     c: Context = Depends(ctx)) -> dict[str, str]:
    try:
        c.keys.retire(kid)
    except KeyRingError as e:
        raise ApiError(409, "key_conflict", str(e)) from None
    await c.audit.record("key_retired", actor(request), claims["sub"], kid=kid)
    await key_changes.announce(c.redis, "retired", kid)
    return {"retired": kid}
