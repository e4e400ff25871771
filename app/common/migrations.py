"""Alembic, run programmatically by each service at startup (and by its `migrate` command).

Each service keeps its own script directory and version table, so two services' histories
can share one database; an advisory lock per service keeps two starting instances from
running the same migration at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def config(script_location: Path, settings: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["settings"] = settings
    return cfg


def upgrade(script_location: Path, settings: Any, revision: str = "head") -> None:
    command.upgrade(config(script_location, settings), revision)


def downgrade(script_location: Path, settings: Any, revision: str) -> None:
    command.downgrade(config(script_location, settings), revision)


def run_online(make_engine: Callable[[Any], AsyncEngine], version_table: str, lock_id: int) -> None:
    """The body of a service's migrations/env.py."""

    def run(connection: Connection) -> None:
        context.configure(connection=connection, version_table=version_table, transaction_per_migration=True)
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
        try:
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
            connection.commit()

    async def main() -> None:
        engine = make_engine(context.config.attributes["settings"])
        try:
            async with engine.connect() as conn:
                await conn.run_sync(run)
        finally:
            await engine.dispose()

    asyncio.run(main())
