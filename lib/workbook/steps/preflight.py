"""Steps of 00_preflight: latency against a budget, each service's clock, the stack's processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime

import asyncpg
import httpx
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client

from workbook.checks import using
from workbook.stack.manager import Stack
from workbook.stack.state import StackState
from workbook.stats import LatencyStats


def assert_within_budget(service: str, stats: LatencyStats, budget_ms: float, samples: int) -> None:
    """Every one of `samples` round trips finished and their p95 is within `budget_ms`."""
    print(f"{service}: {stats} (budget p95 {budget_ms:g} ms)")
    assert stats.count == samples, f"only {stats.count} of {samples} round trips finished in time"
    assert stats.p95 <= budget_ms, f"latency: {service} p95 {stats.p95:.1f} ms > budget {budget_ms:g} ms"


async def clock_offset(read: Callable[[], Awaitable[float]]) -> float:
    """A remote clock (epoch seconds) minus this machine's, corrected for half the round trip."""
    t0 = time.time()
    remote = await read()
    t1 = time.time()
    return remote - (t0 + t1) / 2


async def clock_offsets(pg: asyncpg.Connection, redis: aioredis.Redis, ch: Client,
                        oidc: httpx.AsyncClient) -> dict[str, float]:
    """Each store's clock (and the OIDC provider's) against this machine's, in seconds."""

    async def pg_now() -> float:
        return float(await pg.fetchval("SELECT extract(epoch FROM clock_timestamp())"))

    async def redis_now() -> float:
        sec, usec = await redis.time()
        return sec + usec / 1e6

    async def ch_now() -> float:
        return await asyncio.to_thread(ch.command, "SELECT toUnixTimestamp64Milli(now64(3))") / 1000

    async def oidc_now() -> float:
        # HTTP Date has whole seconds: half a second is the best estimate, and the skew bound
        # absorbs it, where a real skew does not fit.
        resp = await oidc.get("/.well-known/openid-configuration")
        return parsedate_to_datetime(resp.headers["date"]).timestamp() + 0.5

    return {name: await clock_offset(read) for name, read in
            (("postgres", pg_now), ("redis", redis_now), ("clickhouse", ch_now), ("oidc", oidc_now))}


async def stack_processes() -> StackState:
    """The embedded stack's processes as recorded, read while the running check holds each of
    them: another notebook's fault restarts a service under a new pid, which must not happen
    between reading the record and looking at the process."""
    for name in Stack().state().services:
        await using(name)
    return Stack().state()
