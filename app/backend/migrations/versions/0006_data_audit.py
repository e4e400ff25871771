"""A database-level audit trail of the changes that matter: plans, prices, deleted threads.

Triggers write it, so no code path can change a plan or a price, or delete a thread, without a
row saying who (the session's `app.actor`: the user of the request, see `app.common.pool`; a
background task names its service by `application_name`), what (the row before and after, as
JSON) and when. It is append-only for everyone: UPDATE, DELETE and TRUNCATE raise, the table
owner included, and PUBLIC has no privilege on it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# table -> (its key column, the operations audited)
AUDITED = {
    "user_plans": ("user_id", "INSERT OR UPDATE OR DELETE"),
    "supply_models": ("model", "INSERT OR UPDATE OR DELETE"),
    "threads": ("id", "DELETE"),
}


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
    op.create_index("data_audit_actor", "data_audit", ["actor", "id"])
    op.execute("REVOKE ALL ON data_audit FROM PUBLIC")
    op.execute("""
        CREATE FUNCTION data_audit_record() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          before jsonb := CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END;
          after jsonb := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END;
        BEGIN
          IF TG_OP = 'UPDATE' AND before = after THEN RETURN NULL; END IF;
          INSERT INTO data_audit (actor, table_name, op, row_key, old, new) VALUES (
            coalesce(nullif(current_setting('app.actor', true), ''),
                     'system:' || coalesce(nullif(current_setting('application_name'), ''), current_user)),
            TG_TABLE_NAME, TG_OP, coalesce(after, before) ->> TG_ARGV[0], before, after);
          RETURN NULL;
        END $$""")
    for table, (key, ops) in AUDITED.items():
        op.execute(f"CREATE TRIGGER {table}_audited AFTER {ops} ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION data_audit_record('{key}')")
    op.execute("""
        CREATE FUNCTION data_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'data_audit is append-only' USING ERRCODE = 'insufficient_privilege'; END $$""")
    op.execute("""CREATE TRIGGER data_audit_no_change BEFORE UPDATE OR DELETE ON data_audit
                  FOR EACH ROW EXECUTE FUNCTION data_audit_append_only()""")
    op.execute("""CREATE TRIGGER data_audit_no_truncate BEFORE TRUNCATE ON data_audit
                  FOR EACH STATEMENT EXECUTE FUNCTION data_audit_append_only()""")


def downgrade() -> None:
    for table in AUDITED:
        op.execute(f"DROP TRIGGER {table}_audited ON {table}")
    op.drop_table("data_audit")
    op.execute("DROP FUNCTION data_audit_append_only()")
    op.execute("DROP FUNCTION data_audit_record()")
