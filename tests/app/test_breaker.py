"""The backend's circuit breaker, driven by a clock the test advances."""

from __future__ import annotations

import asyncio

import pytest

from app.common.breaker import BreakerOpen, CircuitBreaker, PeerFailure, State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def ok() -> str:
    return "ok"


async def down() -> str:
    raise ConnectionRefusedError("peer down")


async def bad_request() -> str:
    raise ValueError("a 4xx-like problem of the caller")


def run(breaker: CircuitBreaker, fn) -> object:  # type: ignore[no-untyped-def]
    return asyncio.run(breaker.call(fn))


def failing(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ConnectionRefusedError):
            run(breaker, down)


def test_opens_after_threshold_consecutive_failures_and_then_fails_fast() -> None:
    b = CircuitBreaker("auth", failure_threshold=3, reset_s=10, clock=Clock())
    failing(b, 2)
    assert b.state is State.CLOSED
    failing(b, 1)
    assert b.state is State.OPEN
    with pytest.raises(BreakerOpen) as e:
        run(b, ok)
    assert e.value.retry_after_s == pytest.approx(10)
    snap = b.snapshot()
    assert (snap["state"], snap["failures"], snap["rejected"], snap["calls"]) == ("open", 3, 1, 3)


def test_success_resets_the_failure_count() -> None:
    b = CircuitBreaker("auth", failure_threshold=3, reset_s=10, clock=Clock())
    failing(b, 2)
    assert run(b, ok) == "ok"
    failing(b, 2)
    assert b.state is State.CLOSED


def test_half_open_after_reset_then_one_success_closes() -> None:
    clock = Clock()
    b = CircuitBreaker("auth", failure_threshold=1, reset_s=5, clock=clock)
    failing(b, 1)
    clock.now += 4.9
    assert b.state is State.OPEN
    clock.now += 0.2
    assert b.state is State.HALF_OPEN
    assert run(b, ok) == "ok"
    assert b.state is State.CLOSED
    assert [(t["from"], t["to"]) for t in b.snapshot()["transitions"]] == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_trial_reopens_for_a_full_reset_period() -> None:
    clock = Clock()
    b = CircuitBreaker("auth", failure_threshold=2, reset_s=5, clock=clock)
    failing(b, 2)
    clock.now += 5
    failing(b, 1)  # the half-open trial: one failure is enough
    assert b.state is State.OPEN
    clock.now += 4
    assert b.state is State.OPEN


def test_half_open_admits_one_trial_at_a_time() -> None:
    clock = Clock()
    b = CircuitBreaker("auth", failure_threshold=1, reset_s=1, clock=clock)
    failing(b, 1)
    clock.now += 1
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "ok"

    async def scenario() -> list[object]:
        trial = asyncio.create_task(b.call(slow))
        await asyncio.sleep(0)
        second = await asyncio.gather(b.call(ok), return_exceptions=True)
        release.set()
        return [await trial, *second]

    first, second = asyncio.run(scenario())
    assert first == "ok" and isinstance(second, BreakerOpen)
    assert b.state is State.CLOSED


def test_only_peer_failures_count() -> None:
    b = CircuitBreaker("auth", failure_threshold=1, reset_s=5, clock=Clock(),
                       counted=(PeerFailure, OSError))
    for _ in range(3):
        with pytest.raises(ValueError):
            run(b, bad_request)
    assert b.state is State.CLOSED and b.snapshot()["failures"] == 0
