"""A session's revocation is one of the reasons the service writes, and comes with its time.

`refresh_families.revoked_reason` is what reuse detection, logout and revocation leave
behind for an incident review; a free-form value (or a reason without a time, or a time
without a reason) would make "which sessions ended how" unanswerable, so the database
refuses one instead of the code only promising not to write it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Every reason app/auth passes to refresh.revoke_family / revoke_user.
REASONS = ("logout", "revoked", "evicted", "reuse_detected", "session_ended", "password_change")


def upgrade() -> None:
    known = ", ".join(f"'{r}'" for r in REASONS)
    op.create_check_constraint("refresh_families_reason_known", "refresh_families",
                               f"revoked_reason IN ({known})")
    op.create_check_constraint("refresh_families_revoked_with_reason", "refresh_families",
                               "(revoked_at IS NULL) = (revoked_reason IS NULL)")


def downgrade() -> None:
    op.drop_constraint("refresh_families_revoked_with_reason", "refresh_families", type_="check")
    op.drop_constraint("refresh_families_reason_known", "refresh_families", type_="check")
