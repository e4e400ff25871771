"""An index on `oidc_identities.user_id`, the one foreign key of auth's schema without one.

Deleting a user cascades to their OIDC identities; without an index leading with `user_id`
each deletion (and each "which identities does this user have") scans the whole table.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("oidc_identities_user", "oidc_identities", ["user_id"])


def downgrade() -> None:
    op.drop_index("oidc_identities_user", table_name="oidc_identities")
