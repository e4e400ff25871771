"""Alembic environment of the backend schema."""

from app.backend.db import make_engine
from app.backend.migrate import LOCK_ID, VERSION_TABLE
from app.common.migrations import run_online

run_online(make_engine, VERSION_TABLE, LOCK_ID)
