"""Each audit row records the database role that inserted it.

The service writes audit rows through a role that may only INSERT and SELECT them. Whether it
really does is invisible in the rows themselves: a service that wrote them with its own
(owner) role would produce the same rows. A trigger stamps `written_by` with the inserting
role (`current_user`, whatever the INSERT says), so a check can see which path wrote a row.
Rows written before this revision have NULL.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("written_by", sa.Text))
    op.execute("""
        CREATE FUNCTION audit_log_stamp_writer() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.written_by := current_user; RETURN NEW; END $$""")
    op.execute("""CREATE TRIGGER audit_log_writer BEFORE INSERT ON audit_log
                  FOR EACH ROW EXECUTE FUNCTION audit_log_stamp_writer()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_writer ON audit_log")
    op.execute("DROP FUNCTION audit_log_stamp_writer()")
    # The append-only trigger refuses UPDATE and DELETE, not a dropped column.
    op.drop_column("audit_log", "written_by")
