"""Teams: members with a role, invitations by email, and threads shared with a team.

A team thread is an ordinary thread (its creator owns it) listed in `team_threads`: every
member reads it and its live events; owners, admins and members add to it and start runs;
viewers only read. An invitation's token is kept only as its SHA-256 (the email holds it).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ROLES = "('owner', 'admin', 'member', 'viewer')"


def _ts(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("owner_id", UUID(as_uuid=True), nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", UUID(as_uuid=True), sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("joined_at", nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(f"role IN {ROLES}", name="team_members_role_known"),
    )
    op.create_index("team_members_user", "team_members", ["user_id"])
    op.create_table(
        "team_invites",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("team_id", UUID(as_uuid=True), sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("invited_by", UUID(as_uuid=True), nullable=False),
        _ts("expires_at", nullable=False),
        _ts("accepted_at"),
        sa.CheckConstraint(f"role IN {ROLES} AND role <> 'owner'", name="team_invites_role_known"),
    )
    op.create_table(
        "team_threads",
        sa.Column("thread_id", UUID(as_uuid=True), sa.ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("team_id", UUID(as_uuid=True), sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    )
    op.create_index("team_threads_team", "team_threads", ["team_id"])


def downgrade() -> None:
    for table in ("team_threads", "team_invites", "team_members", "teams"):
        op.drop_table(table)
