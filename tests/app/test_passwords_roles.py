"""Password hashing and the role/permission table."""

from __future__ import annotations

from app.auth.passwords import Passwords
from app.auth.roles import ROLES, may_assign, permissions

PASSWORDS = Passwords(time_cost=1, memory_kib=8192, parallelism=1)


def test_hash_is_argon2id_salted_and_verifies() -> None:
    a, b = PASSWORDS.hash("s3cret-password"), PASSWORDS.hash("s3cret-password")
    assert a.startswith("$argon2id$v=19$m=8192,t=1,p=1$") and a != b
    assert PASSWORDS.verify(a, "s3cret-password")
    assert not PASSWORDS.verify(a, "s3cret-passworD")


def test_missing_or_garbage_hash_never_verifies() -> None:
    assert not PASSWORDS.verify(None, "timing-equaliser-not-a-password")
    assert not PASSWORDS.verify("not-a-hash", "anything")


def test_each_role_includes_the_one_below() -> None:
    sets = [set(permissions(r)) for r in ROLES]
    assert all(lower < higher for lower, higher in zip(sets, sets[1:]))
    assert "users:role" not in permissions("member") and "keys:rotate" in permissions("owner")


def test_only_owner_touches_ownership() -> None:
    assert may_assign("admin", "member", "viewer")
    assert not may_assign("admin", "member", "owner")
    assert not may_assign("admin", "owner", "member")
    assert may_assign("owner", "member", "owner")
    assert not may_assign("member", "viewer", "member")
