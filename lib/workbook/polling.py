"""Waiting for the platform to get somewhere: the one polling helper the notebooks use.

    run = await poll(lambda: backend.run(user.access, run_id), until=lambda r: r["status"] == "completed",
                     within_s=5, what=f"run {run_id} completed")
    gauge = await poll(read_gauge, settle_s=0.2, within_s=3)     # the value once it stops moving

Every wait has a deadline and tells, when it runs out, what it waited for and the last value it
saw; between tries it sleeps `every_s` (50 ms), so a wait ends within one interval of the event.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class PollTimeout(AssertionError):
    """What a poll waited for did not happen in time (a failed check, with the last value seen)."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


async def poll(probe: Callable[[], Awaitable[T] | T], until: Callable[[T], bool] = bool, *,
               within_s: float, every_s: float = 0.05, settle_s: float = 0.0, what: str = "") -> T:
    """Call `probe` until `until(value)` holds (and, with `settle_s`, the value stayed the same
    that long); return that value. Past `within_s`, raise PollTimeout naming `what` and the last
    value. An AssertionError raised by `probe` counts as "not yet" (its message is kept)."""
    deadline = time.monotonic() + within_s
    last: Any = None
    last_error: AssertionError | None = None
    stable_since: float | None = None
    while True:
        try:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
            last_error = None
            now = time.monotonic()
            if until(value):  # type: ignore[arg-type]
                if settle_s <= 0:
                    return value  # type: ignore[return-value]
                if stable_since is None or value != last:
                    stable_since = now
                elif now - stable_since >= settle_s:
                    return value  # type: ignore[return-value]
            else:
                stable_since = None
            last = value
        except AssertionError as e:
            last_error, stable_since = e, None
        if time.monotonic() >= deadline:
            seen = f"last error: {last_error}" if last_error else f"last value: {_short(last)}"
            raise PollTimeout(f"{what or 'condition'} not reached within {within_s:g} s ({seen})")
        await asyncio.sleep(every_s)
