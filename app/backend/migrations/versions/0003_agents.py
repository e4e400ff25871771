"""Agents: run and step accounting, the supply catalog with price history, plans and usage.

Usage lives in its own tables (not derived from runs) because runs go with their thread when
it is deleted, while what a user consumed must not.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(20, 10)
STATUSES_BEFORE = "('queued', 'running', 'completed', 'failed', 'cancelled')"
STATUSES = "('queued', 'running', 'awaiting_input', 'completed', 'failed', 'cancelled')"

# USD per million tokens; tier: 1 basic, 2 standard, 3 advanced (a recommendation never goes down a tier).
SEED_MODELS = [
    ("standin-large", "llm-standin", "2.5", "10", 3),
    ("standin-small", "llm-standin", "0.15", "0.6", 1),
    ("gpt-4o", "openai", "2.5", "10", 3),
    ("gpt-4o-mini", "openai", "0.15", "0.6", 1),
    ("claude-3-5-sonnet", "anthropic", "3", "15", 3),
    ("claude-3-5-haiku", "anthropic", "0.8", "4", 2),
    ("deepseek-v3", "deepseek", "0.27", "1.1", 3),
    ("llama-3.1-70b", "meta", "0.6", "0.6", 2),
]


def _ts(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)


def _tokens(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger, nullable=False, server_default="0")


def upgrade() -> None:
    op.add_column("runs", sa.Column("agent", sa.String(32), nullable=False, server_default="supervisor"))
    op.add_column("runs", sa.Column("input", sa.Text))
    op.add_column("runs", sa.Column("error_code", sa.String(32)))
    op.add_column("runs", sa.Column("pending_input", JSONB))
    op.add_column("runs", _tokens("prompt_tokens"))
    op.add_column("runs", _tokens("completion_tokens"))
    op.add_column("runs", sa.Column("cost_usd", MONEY, nullable=False, server_default="0"))
    op.drop_constraint("runs_status_known", "runs")
    op.create_check_constraint("runs_status_known", "runs", f"status IN {STATUSES}")
    op.create_index("runs_status_instance", "runs", ["status", "instance_id"])

    op.add_column("run_steps", sa.Column("agent", sa.String(32)))
    op.add_column("run_steps", sa.Column("model", sa.Text))
    op.add_column("run_steps", _tokens("prompt_tokens"))
    op.add_column("run_steps", _tokens("completion_tokens"))
    op.add_column("run_steps", sa.Column("cost_usd", MONEY, nullable=False, server_default="0"))

    models = op.create_table(
        "supply_models",
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("input_usd_per_mtok", MONEY, nullable=False),
        sa.Column("output_usd_per_mtok", MONEY, nullable=False),
        sa.Column("tier", sa.SmallInteger, nullable=False),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
        sa.Column("updated_by", sa.Text, nullable=False, server_default="seed"),
        sa.CheckConstraint("input_usd_per_mtok >= 0 AND output_usd_per_mtok >= 0", name="supply_prices_positive"),
        sa.CheckConstraint("tier BETWEEN 0 AND 5", name="supply_tier_range"),
    )
    op.bulk_insert(models, [{"model": m, "provider": p, "input_usd_per_mtok": i, "output_usd_per_mtok": o, "tier": t}
                            for m, p, i, o, t in SEED_MODELS])
    op.create_table(
        "supply_price_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("model", sa.Text, sa.ForeignKey("supply_models.model", ondelete="CASCADE"), nullable=False),
        sa.Column("old_input_usd_per_mtok", MONEY),
        sa.Column("old_output_usd_per_mtok", MONEY),
        sa.Column("input_usd_per_mtok", MONEY, nullable=False),
        sa.Column("output_usd_per_mtok", MONEY, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("changed_by", sa.Text, nullable=False),
        _ts("changed_at", nullable=False, server_default=sa.func.now()),
    )
    op.create_index("supply_history_model", "supply_price_history", ["model", "id"])
    op.create_table(
        "user_plans",
        sa.Column("user_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("plan", sa.String(16), nullable=False),
        _ts("updated_at", nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "usage_daily",
        sa.Column("user_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("runs", sa.Integer, nullable=False),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("run_id", UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("agent", sa.String(32), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        _tokens("prompt_tokens"),
        _tokens("completion_tokens"),
        sa.Column("cost_usd", MONEY, nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
    )
    op.create_index("usage_records_user", "usage_records", ["user_id", "created_at"])


def downgrade() -> None:
    for table in ("usage_records", "usage_daily", "user_plans", "supply_price_history", "supply_models"):
        op.drop_table(table)
    for column in ("cost_usd", "completion_tokens", "prompt_tokens", "model", "agent"):
        op.drop_column("run_steps", column)
    op.drop_index("runs_status_instance", "runs")
    op.execute("DELETE FROM runs WHERE status = 'awaiting_input'")
    op.drop_constraint("runs_status_known", "runs")
    op.create_check_constraint("runs_status_known", "runs", f"status IN {STATUSES_BEFORE}")
    for column in ("cost_usd", "completion_tokens", "prompt_tokens", "pending_input", "error_code", "input", "agent"):
        op.drop_column("runs", column)
