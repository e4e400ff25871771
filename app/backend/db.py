"""The backend's PostgreSQL engine (its own database; users live in auth's)."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.common.settings import BackendSettings


def make_engine(settings: BackendSettings) -> AsyncEngine:
    url = make_url(settings.database_url).set(drivername="postgresql+asyncpg")
    if password := settings.secret("database_password"):
        url = url.set(password=password)
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                               connect_args={"timeout": settings.dependency_timeout_s})
