"""A circuit breaker for calls to another service.

closed: calls go through; `failure_threshold` failures in a row open it.
open: calls fail at once with `BreakerOpen` (no waiting on a dead peer) for `reset_s`.
half_open: after `reset_s` one trial call goes through; success closes, failure reopens.

Only failures of the peer count (transport errors, timeouts, 5xx); a 4xx is the caller's
problem and leaves the breaker alone.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


class State(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOpen(Exception):
    def __init__(self, name: str, retry_after_s: float):
        super().__init__(f"circuit breaker for {name} is open")
        self.name, self.retry_after_s = name, retry_after_s


class PeerFailure(Exception):
    """The peer answered, but with a server error: counts against the breaker."""


class CircuitBreaker:
    def __init__(self, name: str, failure_threshold: int, reset_s: float,
                 counted: tuple[type[BaseException], ...] = (PeerFailure, OSError, TimeoutError),
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self.counted = counted
        self.clock = clock
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False
        self.calls = self.successes = self.failures = self.rejected = 0
        self.transitions: deque[dict[str, Any]] = deque(maxlen=20)

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self.clock() - self._opened_at >= self.reset_s:
            self._move(State.HALF_OPEN)
        return self._state

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        state = self.state
        if state is State.OPEN or (state is State.HALF_OPEN and self._trial):
            self.rejected += 1
            raise BreakerOpen(self.name, self._retry_after())
        trial = state is State.HALF_OPEN
        self._trial = self._trial or trial
        self.calls += 1
        try:
            result = await fn()
        except self.counted:
            self._failed()
            raise
        finally:
            if trial:
                self._trial = False
        self._succeeded()
        return result

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        return {"state": state.value, "consecutive_failures": self._failures,
                "failure_threshold": self.failure_threshold, "reset_s": self.reset_s,
                "retry_after_s": round(self._retry_after(), 3) if state is State.OPEN else 0,
                "calls": self.calls, "successes": self.successes, "failures": self.failures,
                "rejected": self.rejected, "transitions": list(self.transitions)}

    def _retry_after(self) -> float:
        return max(0.0, self.reset_s - (self.clock() - self._opened_at))

    def _failed(self) -> None:
        self.failures += 1
        self._failures += 1
        if self._state is State.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self.clock()
            self._move(State.OPEN)

    def _succeeded(self) -> None:
        self.successes += 1
        self._failures = 0
        if self._state is not State.CLOSED:
            self._move(State.CLOSED)

    def _move(self, to: State) -> None:
        if to is not self._state:
            self.transitions.append({"from": self._state.value, "to": to.value, "at": time.time()})
            self._state = to
