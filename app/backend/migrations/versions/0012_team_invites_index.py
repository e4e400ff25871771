"""Index team_invites.team_id: deleting a team cascades to its invitations, and listing a team's
open invitations filters on it (04's every_foreign_key_indexed found it missing).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("team_invites_team", "team_invites", ["team_id"])


def downgrade() -> None:
    op.drop_index("team_invites_team", table_name="team_invites")
