"""The backend schema's Alembic migrations (run at startup, or `python -m app.backend migrate`)."""

from __future__ import annotations

from pathlib import Path

from app.common import migrations
from app.common.settings import BackendSettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "backend_alembic_version"
LOCK_ID = 0xBAC0


def upgrade(settings: BackendSettings, revision: str = "head") -> None:
    migrations.upgrade(MIGRATIONS, settings, revision)


def downgrade(settings: BackendSettings, revision: str) -> None:
    migrations.downgrade(MIGRATIONS, settings, revision)
