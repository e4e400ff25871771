"""Service clients (id + secret + allowed scopes), seeded from settings into PostgreSQL."""

from __future__ import annotations

import hmac
import time

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.models import service_clients
from app.auth.passwords import Passwords
from app.common.settings import AuthSettings


async def seed(conn: AsyncConnection, settings: AuthSettings, passwords: Passwords) -> None:
    for cid, client in settings.service_clients.items():
        secret = client.secret.get_secret_value()
        row = (await conn.execute(select(service_clients).where(service_clients.c.id == cid))).first()
        if row and passwords.verify(row.secret_hash, secret) and list(row.scopes) == client.scopes:
            continue
        values = {"secret_hash": passwords.hash(secret), "scopes": client.scopes}
        await conn.execute(insert(service_clients).values(id=cid, **values)
                           .on_conflict_do_update(index_elements=["id"], set_=values))


def previous_secret_scopes(settings: AuthSettings, client_id: str, secret: str) -> list[str] | None:
    """The client's scopes if `secret` is its previous secret and the rotation window is still open."""
    client = settings.service_clients.get(client_id)
    if client is None or client.previous_secret is None or client.previous_valid_until is None:
        return None
    if time.time() >= client.previous_valid_until:
        return None
    if not hmac.compare_digest(client.previous_secret.get_secret_value().encode(), secret.encode()):
        return None
    return list(client.scopes)


async def authenticate(conn: AsyncConnection, passwords: Passwords, client_id: str, secret: str) -> list[str] | None:
    """The client's allowed scopes if id and secret match, else None (same cost either way)."""
    row = (await conn.execute(select(service_clients).where(service_clients.c.id == client_id))).first()
    if not await passwords.verify_async(row.secret_hash if row else None, secret) or row is None:
        return None
    return list(row.scopes)
