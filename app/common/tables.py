"""The backend database's schema as SQLAlchemy Core tables (app/backend/migrations creates it).

It sits below both the agents, which record runs, steps, usage and prices in it and read a
thread's history from it, and the backend, which serves threads and runs from it."""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Date, DateTime, Float, Integer, LargeBinary, MetaData, Numeric,
                        SmallInteger, String, Table, Text, func)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()
MONEY = Numeric(20, 10)  # USD; prices are per million tokens, so single calls need the decimals

# A thread belongs to one user; owner_id is auth's user id (another database: no FK).
threads = Table(
    "threads", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("owner_id", UUID(as_uuid=True), nullable=False),
    Column("title", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Bumped by every edit: a client editing with a stale version is refused (migration 0005).
    Column("version", Integer, nullable=False, server_default="1"),
)

messages = Table(
    "messages", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("thread_id", UUID(as_uuid=True), nullable=False),
    Column("owner_id", UUID(as_uuid=True), nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A run in one of these may still be written to by the instance running it.
RUN_ACTIVE = ("queued", "running", "awaiting_input")

runs = Table(
    "runs", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("thread_id", UUID(as_uuid=True), nullable=False),
    Column("owner_id", UUID(as_uuid=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("scenario", String(32), nullable=False),
    Column("instance_id", Text, nullable=False),
    Column("request_id", Text),
    Column("trace_id", Text),
    Column("error", Text),
    Column("result", JSONB),
    Column("agent", String(32), nullable=False),
    Column("input", Text),
    Column("error_code", String(32)),
    Column("pending_input", JSONB),
    Column("prompt_tokens", BigInteger, nullable=False, server_default="0"),
    Column("completion_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", MONEY, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

run_steps = Table(
    "run_steps", metadata,
    Column("run_id", UUID(as_uuid=True), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("name", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("event_id", BigInteger),
    Column("duration_ms", Float),
    Column("detail", JSONB, nullable=False),
    Column("agent", String(32)),
    Column("model", Text),
    Column("prompt_tokens", BigInteger, nullable=False, server_default="0"),
    Column("completion_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", MONEY, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

supply_models = Table(
    "supply_models", metadata,
    Column("model", Text, primary_key=True),
    Column("provider", Text, nullable=False),
    Column("input_usd_per_mtok", MONEY, nullable=False),
    Column("output_usd_per_mtok", MONEY, nullable=False),
    Column("tier", SmallInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text, nullable=False, server_default="seed"),
)

supply_price_history = Table(
    "supply_price_history", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("model", Text, nullable=False),
    Column("old_input_usd_per_mtok", MONEY),
    Column("old_output_usd_per_mtok", MONEY),
    Column("input_usd_per_mtok", MONEY, nullable=False),
    Column("output_usd_per_mtok", MONEY, nullable=False),
    Column("source", Text, nullable=False),
    Column("changed_by", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

user_plans = Table(
    "user_plans", metadata,
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("plan", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # A bought plan: paid until period_end, then pending_plan (a downgrade) if one is set.
    Column("period_end", DateTime(timezone=True)),
    Column("pending_plan", String(16)),
    # Bumped by every change; an admin's change applies only from the version it read.
    Column("version", Integer, nullable=False, server_default="1"),
)

checkout_sessions = Table(
    "checkout_sessions", metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("plan", String(16), nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),
)

billing_events = Table(
    "billing_events", metadata,
    Column("event_id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("user_id", UUID(as_uuid=True)),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

invoices = Table(
    "invoices", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("plan", String(16), nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("event_id", Text, nullable=False),
    Column("checkout_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

provider_connections = Table(
    "provider_connections", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("owner_id", UUID(as_uuid=True), nullable=False),
    Column("name", Text, nullable=False),
    Column("base_url", Text, nullable=False),
    Column("key_ciphertext", LargeBinary, nullable=False),
    Column("key_nonce", LargeBinary, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default="untested"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("tested_at", DateTime(timezone=True)),
)

usage_daily = Table(
    "usage_daily", metadata,
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("runs", Integer, nullable=False),
)

usage_records = Table(
    "usage_records", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("run_id", UUID(as_uuid=True), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("agent", String(32), nullable=False),
    Column("model", Text, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_usd", MONEY, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when the user was deleted and user_id became the deletion's tombstone (migration 0004).
    Column("anonymised_at", DateTime(timezone=True)),
)

# Teams (app.backend.teams): a team thread is a thread listed in team_threads.
teams = Table(
    "teams", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", Text, nullable=False),
    Column("owner_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

team_members = Table(
    "team_members", metadata,
    Column("team_id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

team_invites = Table(
    "team_invites", metadata,
    Column("token_hash", Text, primary_key=True),
    Column("team_id", UUID(as_uuid=True), nullable=False),
    Column("email", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("invited_by", UUID(as_uuid=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("accepted_at", DateTime(timezone=True)),
)

team_threads = Table(
    "team_threads", metadata,
    Column("thread_id", UUID(as_uuid=True), primary_key=True),
    Column("team_id", UUID(as_uuid=True), nullable=False),
)
