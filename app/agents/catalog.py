"""The supply catalog: model prices in PostgreSQL, every change with its history row, reads
through a Redis cache that every instance shares and every change drops.

A cold entry read by many requests at once (on every instance) is loaded from PostgreSQL once:
the first reader takes a short Redis lock (`supply:price:<model>:loading`, SET NX) and fills the
entry; the others wait for it (up to the lock's life) instead of each querying the database.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agents import metrics
from app.common.tables import supply_models, supply_price_history

MILLION = Decimal(1_000_000)
LOAD_LOCK_MS = 2000  # a loader that died frees the others after this
LOAD_POLL_S = 0.01


@dataclass(frozen=True)
class Price:
    model: str
    provider: str
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    tier: int
    updated_at: str
    updated_by: str

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / MILLION

    def public(self) -> dict[str, Any]:
        return {**asdict(self), "input_usd_per_mtok": money(self.input_usd_per_mtok),
                "output_usd_per_mtok": money(self.output_usd_per_mtok)}


def _price(row: Any) -> Price:
    return Price(row.model, row.provider, Decimal(row.input_usd_per_mtok), Decimal(row.output_usd_per_mtok),
                 row.tier, row.updated_at.isoformat(), row.updated_by)


def cache_key(model: str) -> str:
    return f"supply:price:{model}"


class Catalog:
    def __init__(self, db: AsyncEngine, redis: Redis, ttl_s: int):
        self.db, self.redis, self.ttl_s = db, redis, ttl_s

    async def all(self) -> list[Price]:
        async with self.db.connect() as conn:
            return [_price(r) for r in await conn.execute(select(supply_models).order_by(supply_models.c.model))]

    async def get(self, model: str) -> tuple[Price | None, bool]:
        """The price and whether it came from the cache (a Redis outage reads the database)."""
        try:
            cached = await self._cached(model)
            if cached is None:
                if await self.redis.set(f"{cache_key(model)}:loading", 1, nx=True, px=LOAD_LOCK_MS):
                    cached = await self._cached(model)  # a loader may have filled it since our read
                    if cached is not None:
                        await self.redis.delete(f"{cache_key(model)}:loading")
                else:
                    cached = await self._filled_by_other(model)
        except (RedisError, OSError):
            cached = None
        if cached is not None:
            return cached, True
        metrics.price_loads.inc()
        async with self.db.connect() as conn:
            row = (await conn.execute(select(supply_models).where(supply_models.c.model == model))).first()
        price = None if row is None else _price(row)
        try:
            async with self.redis.pipeline(transaction=True) as p:
                if price is not None:
                    p.set(cache_key(model), json.dumps(price.public()), ex=self.ttl_s)
                p.delete(f"{cache_key(model)}:loading")
                await p.execute()
        except (RedisError, OSError):
            pass
        return price, False

    async def _cached(self, model: str) -> Price | None:
        cached = await self.redis.get(cache_key(model))
        if not cached:
            return None
        data = json.loads(cached)
        return Price(**{**data, "input_usd_per_mtok": Decimal(data["input_usd_per_mtok"]),
                        "output_usd_per_mtok": Decimal(data["output_usd_per_mtok"])})

    async def _filled_by_other(self, model: str) -> Price | None:
        """Wait while another reader loads the entry; None if it did not (unknown model, loader died)."""
        deadline = time.monotonic() + LOAD_LOCK_MS / 1000
        while time.monotonic() < deadline:
            if (cached := await self._cached(model)) is not None:
                return cached
            if not await self.redis.exists(f"{cache_key(model)}:loading"):
                return await self._cached(model)
            await asyncio.sleep(LOAD_POLL_S)
        return None

    async def set_price(self, model: str, input_usd: Decimal, output_usd: Decimal, source: str, by: str,
                        provider: str | None = None, tier: int | None = None) -> tuple[Price, dict[str, Any]]:
        """Create or change a model's price; the history row and the change commit together."""
        async with self.db.begin() as conn:
            old = (await conn.execute(select(supply_models).where(supply_models.c.model == model)
                                      .with_for_update())).first()
            values = {"input_usd_per_mtok": input_usd, "output_usd_per_mtok": output_usd, "updated_by": by}
            if old is None:
                await conn.execute(insert(supply_models).values(model=model, provider=provider or "unknown",
                                                                tier=tier if tier is not None else 0, **values))
            else:
                extra = {k: v for k, v in (("provider", provider), ("tier", tier)) if v is not None}
                await conn.execute(update(supply_models).where(supply_models.c.model == model)
                                   .values(**values, **extra, updated_at=func.now()))
            hist = (await conn.execute(insert(supply_price_history).values(
                model=model, old_input_usd_per_mtok=old.input_usd_per_mtok if old else None,
                old_output_usd_per_mtok=old.output_usd_per_mtok if old else None,
                input_usd_per_mtok=input_usd, output_usd_per_mtok=output_usd, source=source, changed_by=by)
                .returning(supply_price_history.c.id))).scalar_one()
            row = (await conn.execute(select(supply_models).where(supply_models.c.model == model))).one()
        await self._drop_cached(model)
        return _price(row), {"history_id": hist, "created": old is None}

    async def history(self, model: str) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(supply_price_history).where(supply_price_history.c.model == model)
                                      .order_by(supply_price_history.c.id))
        return [{"id": r.id, "old_input_usd_per_mtok": _s(r.old_input_usd_per_mtok),
                 "old_output_usd_per_mtok": _s(r.old_output_usd_per_mtok),
                 "input_usd_per_mtok": _s(r.input_usd_per_mtok), "output_usd_per_mtok": _s(r.output_usd_per_mtok),
                 "source": r.source, "changed_by": r.changed_by, "changed_at": r.changed_at.isoformat()}
                for r in rows]

    async def remove(self, model: str) -> bool:
        async with self.db.begin() as conn:
            gone = (await conn.execute(delete(supply_models).where(supply_models.c.model == model))).rowcount
        await self._drop_cached(model)
        return bool(gone)

    async def _drop_cached(self, model: str) -> None:
        # A failed drop would leave a stale price for up to the TTL: the caller must hear about it.
        await self.redis.delete(cache_key(model))


def money(v: Decimal) -> str:
    """Exact, without trailing zeros or an exponent: "2.5", "10", "0.000015"."""
    return format(Decimal(v).normalize(), "f")


def _s(v: Decimal | None) -> str | None:
    return None if v is None else money(v)
