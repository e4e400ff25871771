"""The auth schema as SQLAlchemy Core tables, for queries (the migrations create it)."""

from __future__ import annotations

from sqlalchemy import (ARRAY, BigInteger, Column, DateTime, ForeignKey, MetaData, String, Table, Text, func)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("email", Text, nullable=False),
    Column("password_hash", Text),  # NULL for accounts that only log in through OIDC
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("password_changed_at", DateTime(timezone=True)),
    Column("email_verified_at", DateTime(timezone=True)),
    Column("display_name", Text),
)

# Verification and password-reset links: only the token's SHA-256 is kept.
email_tokens = Table(
    "email_tokens", metadata,
    Column("token_hash", Text, primary_key=True),
    Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

refresh_families = Table(
    "refresh_families", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    # One of migration 0002's reasons, set together with revoked_at (the database refuses otherwise).
    Column("revoked_reason", String(32)),
)

refresh_tokens = Table(
    "refresh_tokens", metadata,
    Column("jti", UUID(as_uuid=True), primary_key=True),
    Column("family_id", UUID(as_uuid=True), ForeignKey("refresh_families.id", ondelete="CASCADE"),
           nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", BigInteger, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("event", String(32), nullable=False),
    Column("user_id", UUID(as_uuid=True)),
    Column("email", Text),
    Column("ip", Text),
    Column("user_agent", Text),
    Column("detail", JSONB, nullable=False, server_default="{}"),
    # Stamped by a trigger with the inserting database role (migration 0003), never by the service.
    Column("written_by", Text),
)

oidc_identities = Table(
    "oidc_identities", metadata,
    Column("issuer", Text, primary_key=True),
    Column("subject", Text, primary_key=True),
    Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_login_at", DateTime(timezone=True)),
)

service_clients = Table(
    "service_clients", metadata,
    Column("id", String(64), primary_key=True),
    Column("secret_hash", Text, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
