"""Messages of a thread, agent runs and their steps.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("thread_id", UUID(as_uuid=True), sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner_id", UUID(as_uuid=True), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="messages_role_known"),
    )
    op.create_index("messages_thread_created", "messages", ["thread_id", "created_at"])
    op.create_table(
        "runs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("thread_id", UUID(as_uuid=True), sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner_id", UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scenario", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text),
        sa.Column("trace_id", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("result", JSONB),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("started_at"),
        _ts("finished_at"),
        sa.CheckConstraint("status IN ('queued', 'running', 'completed', 'failed', 'cancelled')",
                           name="runs_status_known"),
    )
    op.create_index("runs_thread_created", "runs", ["thread_id", "created_at"])
    op.create_table(
        "run_steps",
        sa.Column("run_id", UUID(as_uuid=True), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("event_id", sa.BigInteger),
        sa.Column("duration_ms", sa.Float),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("run_steps")
    op.drop_table("runs")
    op.drop_table("messages")
