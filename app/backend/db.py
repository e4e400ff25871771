"""The backend's PostgreSQL engine (its own database; users live in auth's)."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.common import pool
from app.common.settings import BackendSettings


def make_engine(settings: BackendSettings) -> AsyncEngine:
    url = make_url(settings.database_url).set(drivername="postgresql+asyncpg")
    if password := settings.secret("database_password"):
        url = url.set(password=password)
    # The instance id in application_name tells the two backends' connections apart.
    return pool.make_engine(url, f"backend:{settings.instance_id}", settings.db_pool_size, settings.db_max_overflow,
                            settings.db_pool_timeout_s, settings.dependency_timeout_s)
