"""Many real requests at once, never more than a bound in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def gather_bounded(limit: int, makers: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run every `maker()` with at most `limit` running at a time; results in the makers' order.
    Makers (not coroutines) so nothing starts before it has a slot."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    slots = asyncio.Semaphore(limit)

    async def one(make: Callable[[], Awaitable[T]]) -> T:
        async with slots:
            return await make()

    return list(await asyncio.gather(*(one(m) for m in makers)))
