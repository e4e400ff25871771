"""The auth schema's Alembic migrations (run at startup, or `python -m app.auth migrate`)."""

from __future__ import annotations

from pathlib import Path

from app.common import migrations
from app.common.settings import AuthSettings

MIGRATIONS = Path(__file__).parent / "migrations"
# Its own version table, so the backend's Alembic history can share a database.
VERSION_TABLE = "auth_alembic_version"
LOCK_ID = 0x4A17


def upgrade(settings: AuthSettings, revision: str = "head") -> None:
    migrations.upgrade(MIGRATIONS, settings, revision)


def downgrade(settings: AuthSettings, revision: str) -> None:
    migrations.downgrade(MIGRATIONS, settings, revision)
