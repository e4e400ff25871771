"""The backends' leader lease (app.backend.leader) on a real Redis: one leader among contenders,
a successor's token fences the old leader off at once, a lapsed lease is taken over."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis as AsyncRedis

from app.backend.leader import JOBS_KEY, LEASE_KEY, Leader
from workbook.stack.manager import Stack
from workbook.stack.redis import Redis
from workbook.stack.state import stack_secret

LEASE_S = 0.6


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root: Path = tmp_path_factory.mktemp("leader")
    stack = Stack(root, [Redis()])
    stack.up()
    try:
        yield stack.state().services["redis"].url, stack_secret(stack.paths, "redis")
    finally:
        stack.down()


def client(redis_url: tuple[str, str]) -> AsyncRedis:
    return AsyncRedis.from_url(redis_url[0], password=redis_url[1])


async def nothing() -> None:
    return None


def test_one_leader_among_contenders(redis_url: tuple[str, str]) -> None:
    async def go() -> None:
        r = client(redis_url)
        await r.delete(LEASE_KEY, JOBS_KEY)
        leaders = [Leader(r, f"i{n}", LEASE_S, nothing) for n in range(3)]
        tasks = [asyncio.create_task(leader.run()) for leader in leaders]
        try:
            for _ in range(10):
                await asyncio.sleep(LEASE_S / 3)
                assert sum(leader.leading for leader in leaders) <= 1
            assert sum(leader.leading for leader in leaders) == 1
            jobs = await r.xrange(JOBS_KEY)
            assert jobs and len({f[b"instance"] for _, f in jobs}) == 1, jobs
        finally:
            for t in tasks:
                t.cancel()
            await r.aclose()
    asyncio.run(go())


def test_successor_fences_the_old_token_and_takes_a_lapsed_lease(redis_url: tuple[str, str]) -> None:
    async def go() -> None:
        r = client(redis_url)
        await r.delete(LEASE_KEY, JOBS_KEY)
        old, new = Leader(r, "old", LEASE_S, nothing), Leader(r, "new", LEASE_S, nothing)
        old.token = int(await old._acquire(keys=[LEASE_KEY, "backend:leader:token"], args=["old", 600]))
        assert old.token > 0 and await old._fenced_record("sweep", 1)
        # The old leader stalls; its lease lapses and the successor takes it with a larger token.
        await r.pexpire(LEASE_KEY, 1)
        await asyncio.sleep(0.01)
        new.token = int(await new._acquire(keys=[LEASE_KEY, "backend:leader:token"], args=["new", 600]))
        assert new.token > old.token
        assert not await old._fenced_record("sweep", 2), "a stale leader's job was recorded"
        assert await new._fenced_record("sweep", 2)
        assert [f[b"instance"] for _, f in await r.xrange(JOBS_KEY)] == [b"old", b"new"]
        await r.aclose()
    asyncio.run(go())
