"""Usage records outlive their user, anonymised: when that happened.

Deleting a user deletes their threads, runs and plan, but not what they consumed: usage
records are the bill. Their `user_id` becomes the deletion's tombstone (a random id, see
`app.backend.user_data`), and `anonymised_at` says which rows that was done to and when, so
billing can tell a deleted account's rows from a live one's.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("anonymised_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # The rows keep their tombstone ids: the users they belonged to are gone either way.
    op.drop_column("usage_records", "anonymised_at")
