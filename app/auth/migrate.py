"""Run the Alembic migrations programmatically (at startup, or `python -m app.auth migrate`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.common.settings import AuthSettings

MIGRATIONS = Path(__file__).parent / "migrations"
# Its own version table, so the backend's Alembic history can share a database.
VERSION_TABLE = "auth_alembic_version"


def alembic_config(settings: AuthSettings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["settings"] = settings
    return cfg


def upgrade(settings: AuthSettings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: AuthSettings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)
