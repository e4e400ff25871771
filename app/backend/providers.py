"""Users' own OpenAI-compatible model providers: base URL and API key, the key encrypted at rest.

The key is sealed with AES-GCM under the active key of `provider_keys` (its id stored beside
the ciphertext, the connection's id as associated data, so a ciphertext moved to another row
does not open); any listed key still opens what it sealed, so the encryption key can rotate.
No API answer carries the key. A user's runs call their newest connection that passed its
test; it is looked up at every model call, so deleting it stops its use at once.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agents.llm import Endpoint
from app.common.settings import BackendSettings
from app.common.tables import provider_connections as pc


class KeyRing:
    def __init__(self, settings: BackendSettings):
        raw = settings.secret("provider_keys")
        self.keys = {k: base64.urlsafe_b64decode(v) for k, v in (json.loads(raw) if raw else {}).items()}
        self.active = settings.provider_key_active

    @property
    def ready(self) -> bool:
        return self.active is not None and self.active in self.keys

    def seal(self, plaintext: str, aad: bytes) -> tuple[bytes, bytes, str]:
        assert self.active is not None
        nonce = os.urandom(12)
        return AESGCM(self.keys[self.active]).encrypt(nonce, plaintext.encode(), aad), nonce, self.active

    def open(self, ciphertext: bytes, nonce: bytes, kid: str, aad: bytes) -> str:
        return AESGCM(self.keys[kid]).decrypt(nonce, ciphertext, aad).decode()


def public(row: Any) -> dict[str, Any]:
    return {"id": str(row.id), "name": row.name, "base_url": row.base_url, "status": row.status,
            "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
            "tested_at": row.tested_at.isoformat() if row.tested_at else None}


class Providers:
    def __init__(self, db: AsyncEngine, http: httpx.AsyncClient, settings: BackendSettings):
        self.db, self.http, self.settings, self.ring = db, http, settings, KeyRing(settings)

    async def add(self, owner: str, name: str, base_url: str, api_key: str) -> dict[str, Any]:
        cid = uuid.uuid4()
        ct, nonce, kid = self.ring.seal(api_key, cid.bytes)
        async with self.db.begin() as conn:
            row = (await conn.execute(pc.insert().values(
                id=cid, owner_id=uuid.UUID(owner), name=name, base_url=base_url.rstrip("/"), key_ciphertext=ct,
                key_nonce=nonce, key_id=kid).returning(*pc.c))).one()
        return public(row)

    async def _row(self, owner: str, cid: uuid.UUID) -> Any:
        async with self.db.connect() as conn:
            return (await conn.execute(select(pc).where(pc.c.id == cid, pc.c.owner_id == uuid.UUID(owner)))).first()

    async def get(self, owner: str, cid: uuid.UUID) -> dict[str, Any] | None:
        row = await self._row(owner, cid)
        return public(row) if row else None

    async def list(self, owner: str) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = (await conn.execute(select(pc).where(pc.c.owner_id == uuid.UUID(owner))
                                       .order_by(pc.c.created_at))).all()
        return [public(r) for r in rows]

    async def rotate(self, owner: str, cid: uuid.UUID, api_key: str) -> dict[str, Any] | None:
        """A new API key: sealed under the active encryption key, untested until tested again."""
        ct, nonce, kid = self.ring.seal(api_key, cid.bytes)
        async with self.db.begin() as conn:
            row = (await conn.execute(update(pc).where(pc.c.id == cid, pc.c.owner_id == uuid.UUID(owner)).values(
                key_ciphertext=ct, key_nonce=nonce, key_id=kid, status="untested",
                updated_at=datetime.now(timezone.utc)).returning(*pc.c))).first()
        return public(row) if row else None

    async def remove(self, owner: str, cid: uuid.UUID) -> bool:
        async with self.db.begin() as conn:
            return (await conn.execute(delete(pc).where(pc.c.id == cid, pc.c.owner_id == uuid.UUID(owner)))).rowcount == 1

    async def test(self, owner: str, cid: uuid.UUID) -> dict[str, Any] | None:
        """GET <base>/models with the key: the provider answers with its models, or says why not."""
        row = await self._row(owner, cid)
        if row is None:
            return None
        key = self.ring.open(row.key_ciphertext, row.key_nonce, row.key_id, row.id.bytes)
        try:
            r = await self.http.get(f"{row.base_url}/models", headers={"Authorization": f"Bearer {key}"},
                                    timeout=self.settings.provider_test_timeout_s)
            ok, status = r.status_code == 200, r.status_code
            models = [m.get("id") for m in r.json().get("data", [])] if ok else []
            error = None if ok else ("the provider refused the API key" if status in (401, 403)
                                     else f"the provider answered HTTP {status}")
        except (httpx.HTTPError, ValueError) as e:
            ok, status, models, error = False, None, [], f"the provider is unreachable ({type(e).__name__})"
        async with self.db.begin() as conn:
            await conn.execute(update(pc).where(pc.c.id == cid).values(
                status="ok" if ok else "failed", tested_at=datetime.now(timezone.utc)))
        return {"ok": ok, "provider_status": status, "models": models, "error": error}

    async def endpoint_for(self, user_id: str) -> Endpoint | None:
        """The user's newest connection that passed its test, as the model client calls it."""
        async with self.db.connect() as conn:
            row = (await conn.execute(select(pc).where(pc.c.owner_id == uuid.UUID(user_id), pc.c.status == "ok")
                                      .order_by(pc.c.updated_at.desc()).limit(1))).first()
        if row is None:
            return None
        return Endpoint(row.base_url, self.ring.open(row.key_ciphertext, row.key_nonce, row.key_id, row.id.bytes),
                        str(row.id))


async def reseal(db: AsyncEngine, ring: KeyRing) -> int:
    """Encrypt every stored API key under the ring's active key (after a new key became active,
    so the old one can be retired); the number of connections resealed. One row per transaction,
    guarded by the key id it was read with: safe to run while instances serve and to run again."""
    assert ring.ready, "no active provider key"
    async with db.connect() as conn:
        stale = (await conn.execute(select(pc.c.id, pc.c.key_ciphertext, pc.c.key_nonce, pc.c.key_id)
                                    .where(pc.c.key_id != ring.active))).all()
    done = 0
    for row in stale:
        ct, nonce, kid = ring.seal(ring.open(row.key_ciphertext, row.key_nonce, row.key_id, row.id.bytes), row.id.bytes)
        async with db.begin() as conn:
            done += (await conn.execute(update(pc).where(pc.c.id == row.id, pc.c.key_id == row.key_id)
                                        .values(key_ciphertext=ct, key_nonce=nonce, key_id=kid))).rowcount
    return done
