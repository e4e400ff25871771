"""Roles and the permissions each one carries in its tokens' claims."""

from __future__ import annotations

from typing import Literal

Role = Literal["viewer", "member", "admin", "owner"]
ROLES: tuple[Role, ...] = ("viewer", "member", "admin", "owner")
DEFAULT_ROLE: Role = "member"

_VIEWER = ("profile:read", "threads:read")
_MEMBER = (*_VIEWER, "threads:write", "runs:create")
_ADMIN = (*_MEMBER, "users:read", "users:role", "users:delete", "audit:read")
_OWNER = (*_ADMIN, "users:role:owner", "keys:rotate", "billing:manage")

PERMISSIONS: dict[Role, tuple[str, ...]] = {"viewer": _VIEWER, "member": _MEMBER, "admin": _ADMIN, "owner": _OWNER}


def permissions(role: str) -> list[str]:
    return list(PERMISSIONS[role])  # type: ignore[index]


def may_delete(actor_role: str, target_role: str) -> bool:
    """Admins delete viewers, members and admins; only an owner deletes an owner."""
    if target_role == "owner":
        return actor_role == "owner"
    return "users:delete" in PERMISSIONS.get(actor_role, ())  # type: ignore[call-overload]


def may_assign(actor_role: str, target_current: str, target_new: str) -> bool:
    """Admins manage viewers/members/admins; only an owner grants or takes away ownership."""
    if "owner" in (target_current, target_new):
        return actor_role == "owner"
    return "users:role" in PERMISSIONS.get(actor_role, ())  # type: ignore[call-overload]
