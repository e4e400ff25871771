"""Email verification, password reset by email, and profile completion.

`email_verified_at` is NULL until the owner follows the verification link. A link's token is
stored only as its SHA-256 (the email holds the token itself), with its purpose, expiry and
the moment it was used: a token works once, before it expires. Sessions a reset ends are
revoked with the reason `password_reset`.

Revision ID: 0010
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

# A password reset ends the account's sessions with its own reason.
REASONS_BEFORE = ("logout", "revoked", "evicted", "reuse_detected", "session_ended", "password_change")
REASONS = (*REASONS_BEFORE, "password_reset")

revision = "0010"
down_revision = "0004"
branch_labels = None
depends_on = None


def _reasons(reasons: tuple[str, ...]) -> None:
    op.drop_constraint("refresh_families_reason_known", "refresh_families", type_="check")
    known = ", ".join(f"'{r}'" for r in reasons)
    op.create_check_constraint("refresh_families_reason_known", "refresh_families", f"revoked_reason IN ({known})")


def upgrade() -> None:
    _reasons(REASONS)
    op.add_column("users", sa.Column("email_verified_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("display_name", sa.Text))
    op.create_table(
        "email_tokens",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("purpose IN ('verify', 'reset')", name="email_tokens_purpose_known"),
    )
    op.create_index("email_tokens_user", "email_tokens", ["user_id", "purpose"])


def downgrade() -> None:
    op.drop_table("email_tokens")
    op.drop_column("users", "display_name")
    op.drop_column("users", "email_verified_at")
    op.execute("UPDATE refresh_families SET revoked_reason = 'password_change' WHERE revoked_reason = 'password_reset'")
    _reasons(REASONS_BEFORE)
