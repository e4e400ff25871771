"""Rotating the key users' provider API keys are encrypted with: a new key id becomes active,
`python -m app.backend reseal-provider-keys` re-encrypts what the old one sealed, and the old
key can then go. Against the stack's real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid

from auth_support import backend_env
from sqlalchemy import delete, select

from app.backend.db import make_engine
from app.backend.providers import KeyRing, Providers
from app.common.settings import BackendSettings
from app.common.tables import provider_connections as pc
from workbook.stack.manager import Stack


def ring_env(stack: Stack, keys: dict[str, str], active: str) -> dict[str, str]:
    return backend_env(stack, BACKEND_PROVIDER_KEYS=json.dumps(keys), BACKEND_PROVIDER_KEY_ACTIVE=active)


def settings_of(env: dict[str, str]) -> BackendSettings:
    return BackendSettings(database_url=env["BACKEND_DATABASE_URL"], database_password=env["BACKEND_DATABASE_PASSWORD"],
                           provider_keys=env["BACKEND_PROVIDER_KEYS"], provider_key_active=env["BACKEND_PROVIDER_KEY_ACTIVE"])


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def test_reseal_moves_every_key_to_the_active_one_and_the_old_key_can_go(stack: Stack) -> None:
    old, new = new_key(), new_key()
    before = settings_of(ring_env(stack, {"old": old}, "old"))
    api_key = f"sk-{uuid.uuid4().hex}"

    async def add() -> str:
        engine = make_engine(before)
        try:
            return (await Providers(engine, None, before).add(str(uuid.uuid4()), "mine", "http://x/v1", api_key))["id"]  # type: ignore[arg-type]
        finally:
            await engine.dispose()

    cid = asyncio.run(add())
    try:
        resealed_under_new_key_only(stack, cid, api_key, old, new)
    finally:
        asyncio.run(remove(before, cid))


async def remove(settings: BackendSettings, cid: str) -> None:
    engine = make_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(delete(pc).where(pc.c.id == uuid.UUID(cid)))
    finally:
        await engine.dispose()


def resealed_under_new_key_only(stack: Stack, cid: str, api_key: str, old: str, new: str) -> None:
    rotated = ring_env(stack, {"old": old, "new": new}, "new")
    run = [sys.executable, "-m", "app.backend", "reseal-provider-keys"]
    first = subprocess.run(run, env=rotated, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "resealed under key new" in first.stdout, first.stdout + first.stderr
    assert api_key not in first.stdout + first.stderr

    only_new = KeyRing(settings_of(ring_env(stack, {"new": new}, "new")))

    async def stored() -> tuple[str, str]:
        engine = make_engine(settings_of(rotated))
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(select(pc.c.key_ciphertext, pc.c.key_nonce, pc.c.key_id)
                                          .where(pc.c.id == uuid.UUID(cid)))).one()
        finally:
            await engine.dispose()
        # Only the new key is needed to read it now.
        return row.key_id, only_new.open(bytes(row.key_ciphertext), bytes(row.key_nonce), row.key_id, uuid.UUID(cid).bytes)

    assert asyncio.run(stored()) == ("new", api_key)
    again = subprocess.run(run, env=rotated, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "0 provider connection(s) resealed" in again.stdout, again.stdout + again.stderr


def test_an_active_key_that_is_not_in_the_ring_is_refused_by_name(stack: Stack) -> None:
    env = ring_env(stack, {"old": new_key()}, "missing")
    r = subprocess.run([sys.executable, "-m", "app.backend", "reseal-provider-keys"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "BACKEND_PROVIDER_KEY_ACTIVE" in r.stderr, r.stdout + r.stderr
