"""user_plans.version: a plan change sent with the version it read applies only to that version
(two admins, or an admin and a checkout's webhook, changing one user's plan at once: the later
one learns of the earlier instead of undoing it unseen). A user without a row is at version 0.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("user_plans", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.create_check_constraint("user_plans_version_positive", "user_plans", "version > 0")


def downgrade() -> None:
    op.drop_constraint("user_plans_version_positive", "user_plans")
    op.drop_column("user_plans", "version")
