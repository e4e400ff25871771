"""Database engines: the service's own role, and the audit role that may only INSERT/SELECT."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.common import pool
from app.common.settings import AuthSettings

# Local runs without a configured audit password use this; startup validation refuses it
# everywhere else.
LOCAL_AUDIT_PASSWORD = "local-audit-only"


def database_url(settings: AuthSettings, user: str | None = None, password: str | None = None) -> URL:
    url = make_url(settings.database_url).set(drivername="postgresql+asyncpg")
    if user:
        url = url.set(username=user)
    pw = password if user else settings.secret("database_password")
    return url.set(password=pw) if pw else url


def audit_password(settings: AuthSettings) -> str:
    return settings.secret("audit_db_password") or LOCAL_AUDIT_PASSWORD


def make_engine(settings: AuthSettings) -> AsyncEngine:
    return pool.make_engine(database_url(settings), "auth", settings.db_pool_size, settings.db_max_overflow,
                            settings.db_pool_timeout_s, settings.dependency_timeout_s)


def make_audit_engine(settings: AuthSettings) -> AsyncEngine:
    url = database_url(settings, settings.audit_db_user, audit_password(settings))
    return create_async_engine(url, pool_size=5, pool_pre_ping=True,
                               connect_args={"timeout": settings.dependency_timeout_s,
                                             "server_settings": {"application_name": "auth:audit"}})
