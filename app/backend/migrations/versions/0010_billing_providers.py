"""Plans bought through the payment provider, and users' own model provider connections.

A checkout session is the provider's (its id); the webhook's event ids are kept so a
delivered-again event is applied once; an invoice per payment. A user's plan row gains the end
of the paid period and the plan it turns into then (a downgrade waits for the period's end).
A provider connection keeps its API key only as AES-GCM ciphertext, with the id of the key
that encrypted it (so the encryption key can rotate).

Revision ID: 0010
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None


def _ts(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)


def upgrade() -> None:
    op.add_column("user_plans", _ts("period_end"))
    op.add_column("user_plans", sa.Column("pending_plan", sa.String(16)))
    op.create_table(
        "checkout_sessions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("plan", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("completed_at"),
    )
    op.create_index("checkout_sessions_user", "checkout_sessions", ["user_id"])
    op.create_table(
        "billing_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("user_id", UUID(as_uuid=True)),
        _ts("received_at", nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("plan", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("checkout_id", sa.Text, nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
    )
    op.create_index("invoices_user", "invoices", ["user_id", "created_at"])
    op.create_table(
        "provider_connections",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("owner_id", UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("base_url", sa.Text, nullable=False),
        sa.Column("key_ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("key_nonce", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="untested"),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        _ts("tested_at"),
    )
    op.create_index("provider_connections_owner", "provider_connections", ["owner_id", "created_at"])


def downgrade() -> None:
    for table in ("provider_connections", "invoices", "billing_events", "checkout_sessions"):
        op.drop_table(table)
    op.drop_column("user_plans", "pending_plan")
    op.drop_column("user_plans", "period_end")
