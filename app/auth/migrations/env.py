"""Alembic environment of the auth schema."""

from app.auth.db import make_engine
from app.auth.migrate import LOCK_ID, VERSION_TABLE
from app.common.migrations import run_online

run_online(make_engine, VERSION_TABLE, LOCK_ID)
