"""Role changes audited by the database: a trigger on `users` writes one `data_audit` row per
change of a user's role, in the transaction that changes it, so no code path (an admin endpoint,
a script with the platform's login) changes a role without a row saying who (the session's
`app.actor`, the user of the request, see `app.common.pool`; else `system:<application_name>`),
the role before and after, and when. Only the role is copied: the users row also holds the
password hash, which has no place in an audit trail. Append-only for everyone: UPDATE, DELETE
and TRUNCATE raise, the table owner included, and PUBLIC has no privilege on it (the backend's
`data_audit`, its migration 0006, has the same shape).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_audit",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.clock_timestamp()),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("row_key", sa.Text, nullable=False),
        sa.Column("old", JSONB),
        sa.Column("new", JSONB),
        sa.CheckConstraint("op IN ('INSERT', 'UPDATE', 'DELETE')", name="data_audit_op_known"),
    )
    op.create_index("data_audit_table_key", "data_audit", ["table_name", "row_key", "id"])
    op.execute("REVOKE ALL ON data_audit FROM PUBLIC")
    op.execute("""
        CREATE FUNCTION role_audit_record() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO data_audit (actor, table_name, op, row_key, old, new) VALUES (
            coalesce(nullif(current_setting('app.actor', true), ''),
                     'system:' || coalesce(nullif(current_setting('application_name'), ''), current_user)),
            TG_TABLE_NAME, TG_OP, NEW.id::text, jsonb_build_object('role', OLD.role),
            jsonb_build_object('role', NEW.role));
          RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER users_role_audited AFTER UPDATE OF role ON users FOR EACH ROW "
               "WHEN (OLD.role IS DISTINCT FROM NEW.role) EXECUTE FUNCTION role_audit_record()")
    op.execute("""
        CREATE FUNCTION data_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'data_audit is append-only' USING ERRCODE = 'insufficient_privilege'; END $$""")
    op.execute("""CREATE TRIGGER data_audit_no_change BEFORE UPDATE OR DELETE ON data_audit
                  FOR EACH ROW EXECUTE FUNCTION data_audit_append_only()""")
    op.execute("""CREATE TRIGGER data_audit_no_truncate BEFORE TRUNCATE ON data_audit
                  FOR EACH STATEMENT EXECUTE FUNCTION data_audit_append_only()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER users_role_audited ON users")
    op.drop_table("data_audit")
    op.execute("DROP FUNCTION data_audit_append_only()")
    op.execute("DROP FUNCTION role_audit_record()")
