"""Initial auth schema: users, refresh families/tokens, audit log, OIDC identities, service clients.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from app.auth.db import audit_password

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)


def upgrade() -> None:
    settings = context.config.attributes["settings"]
    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("password_changed_at"),
        sa.CheckConstraint("role IN ('viewer', 'member', 'admin', 'owner')", name="users_role_known"),
    )
    # Case-insensitive uniqueness, which also makes concurrent registration race-free.
    op.create_index("users_email_lower_key", "users", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "refresh_families",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("revoked_at"),
        sa.Column("revoked_reason", sa.String(32)),
    )
    op.create_index("refresh_families_user", "refresh_families", ["user_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("jti", UUID(as_uuid=True), primary_key=True),
        sa.Column("family_id", UUID(as_uuid=True), sa.ForeignKey("refresh_families.id", ondelete="CASCADE"),
                  nullable=False),
        _ts("issued_at", nullable=False, server_default=sa.func.now()),
        _ts("expires_at", nullable=False),
        _ts("used_at"),
    )
    op.create_index("refresh_tokens_family", "refresh_tokens", ["family_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        _ts("at", nullable=False, server_default=sa.func.now()),
        sa.Column("event", sa.String(32), nullable=False),
        # No FK: audit rows outlive the users they mention.
        sa.Column("user_id", UUID(as_uuid=True)),
        sa.Column("email", sa.Text),
        sa.Column("ip", sa.Text),
        sa.Column("user_agent", sa.Text),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.create_index("audit_log_user_at", "audit_log", ["user_id", "at"])
    op.create_table(
        "oidc_identities",
        sa.Column("issuer", sa.Text, primary_key=True),
        sa.Column("subject", sa.Text, primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("last_login_at"),
    )
    op.create_table(
        "service_clients",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("scopes", ARRAY(sa.Text), nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
    )
    # Audit rows are append-only for everyone, the table owner included; the role below
    # additionally has no UPDATE/DELETE privilege at all.
    op.execute("""
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""")
    op.execute("""CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
                  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""")
    op.execute("""CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
                  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""")
    # The password travels as a transaction-local setting, never spliced into SQL text.
    op.get_bind().execute(sa.text("SELECT set_config('auth.audit_role', :r, true), "
                                  "set_config('auth.audit_pw', :p, true)"),
                          {"r": settings.audit_db_user, "p": audit_password(settings)})
    op.execute("""
        DO $$
        DECLARE r text := current_setting('auth.audit_role'); p text := current_setting('auth.audit_pw');
        BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', r, p);
          ELSE
            EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', r, p);
          END IF;
          EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', r);
          EXECUTE format('GRANT INSERT, SELECT ON audit_log TO %I', r);
        END $$""")


def downgrade() -> None:
    role = context.config.attributes["settings"].audit_db_user
    op.get_bind().execute(sa.text("SELECT set_config('auth.audit_role', :r, true)"), {"r": role})
    for table in ("service_clients", "oidc_identities", "audit_log", "refresh_tokens", "refresh_families", "users"):
        op.drop_table(table)
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.execute("""
        DO $$
        DECLARE r text := current_setting('auth.audit_role');
        BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('DROP OWNED BY %I', r);
            EXECUTE format('DROP ROLE %I', r);
          END IF;
        EXCEPTION WHEN SQLSTATE '2BP01' THEN
          NULL;  -- the role still holds grants in another database of the cluster
        END $$""")
