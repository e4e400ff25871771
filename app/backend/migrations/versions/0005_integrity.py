"""Integrity: a version per thread for optimistic concurrency, owner indexes, amount checks.

Two clients editing one thread each send the version they read; the update applies only to
that version, so the second of two concurrent edits is refused (409) instead of silently
overwriting the first. `messages.owner_id` and `runs.owner_id` are what a user's deletion and
the per-user listings filter on; without an index each is a scan of the whole table. Token
counts and costs are amounts: the database refuses a negative one whatever code writes it.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

AMOUNTS = {
    "runs": ("prompt_tokens >= 0 AND completion_tokens >= 0 AND cost_usd >= 0"),
    "run_steps": ("prompt_tokens >= 0 AND completion_tokens >= 0 AND cost_usd >= 0"),
    "usage_records": ("prompt_tokens >= 0 AND completion_tokens >= 0 AND cost_usd >= 0"),
    "usage_daily": "runs >= 0",
}


def upgrade() -> None:
    op.add_column("threads", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.create_check_constraint("threads_version_positive", "threads", "version >= 1")
    op.create_index("messages_owner", "messages", ["owner_id"])
    op.create_index("runs_owner", "runs", ["owner_id"])
    op.create_index("usage_records_run", "usage_records", ["run_id"])
    for table, condition in AMOUNTS.items():
        op.create_check_constraint(f"{table}_amounts_non_negative", table, condition)


def downgrade() -> None:
    for table in AMOUNTS:
        op.drop_constraint(f"{table}_amounts_non_negative", table, type_="check")
    op.drop_index("usage_records_run", table_name="usage_records")
    op.drop_index("runs_owner", table_name="runs")
    op.drop_index("messages_owner", table_name="messages")
    op.drop_constraint("threads_version_positive", "threads", type_="check")
    op.drop_column("threads", "version")
