"""Latency statistics and bounded repetition of real requests.

Every loop here is bounded twice, by a count and by a deadline, so a check that measures
can never turn into an unbounded load on a shared environment.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyStats:
    samples_ms: tuple[float, ...]

    @property
    def count(self) -> int:
        return len(self.samples_ms)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile, q in [0, 100]."""
        if not self.samples_ms:
            raise ValueError("no samples")
        ordered = sorted(self.samples_ms)
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples_ms)

    def __str__(self) -> str:
        return f"n={self.count} p50={self.p50:.1f}ms p95={self.p95:.1f}ms max={max(self.samples_ms):.1f}ms"


async def measure(op: Callable[[], Awaitable[object]], count: int, deadline_s: float = 10.0) -> LatencyStats:
    """Run `op` sequentially up to `count` times or until `deadline_s`, timing each call."""
    if count < 1:
        raise ValueError("count must be at least 1")
    samples = []
    stop = time.monotonic() + deadline_s
    for _ in range(count):
        t0 = time.perf_counter()
        await asyncio.wait_for(op(), timeout=max(0.001, stop - time.monotonic()))
        samples.append((time.perf_counter() - t0) * 1000)
        if time.monotonic() >= stop:
            break
    return LatencyStats(tuple(samples))
