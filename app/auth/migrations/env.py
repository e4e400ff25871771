"""Alembic environment: async engine, one migrator at a time across instances."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.auth.db import make_engine
from app.auth.migrate import VERSION_TABLE
from app.common.settings import AuthSettings

# Two instances starting together must not both run the same migration.
LOCK_ID = 0x4A17


def _run(connection: Connection) -> None:
    context.configure(connection=connection, version_table=VERSION_TABLE, transaction_per_migration=True)
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": LOCK_ID})
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
        connection.commit()


async def _main(settings: AuthSettings) -> None:
    engine = make_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


asyncio.run(_main(context.config.attributes["settings"]))
