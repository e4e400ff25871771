"""A throwaway embedded stack for a benchmark, so a stack you may have running is not touched.

    with own_stack("wb-agents-bench-", services_for(["backend", "backend2"])) as stack:
        asyncio.run(measure(stack))

Started `backend` first and the rest after (prepared in one wave, two backend instances race
to CREATE DATABASE "backend" and one fails to start). Ctrl-C while the stack starts waits
for it to be recorded (else a started process would have nobody to stop it); afterwards it
raises at once and the stack is stopped, also on a failure.
"""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbook.stack.manager import Stack
from workbook.stack.registry import SERVICES
from workbook.stack.service import ServiceSpec


def services_for(names: list[str]) -> list[ServiceSpec]:
    """The registry's services `names` need, dependencies included, in start order."""
    by_name = {s.name: s for s in SERVICES}
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(by_name[name].depends_on)
    return [s for s in SERVICES if s.name in wanted]


def _interrupted(signum: int, frame: object) -> None:
    # asyncio.run's own SIGINT handler only cancels the main task, and on Python 3.11 a
    # cancellation racing a finishing asyncio.wait_for can be lost: raise instead.
    raise KeyboardInterrupt


@contextmanager
def own_stack(prefix: str, services: list[ServiceSpec]) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        stack = Stack(root=root, services=services)
        pending: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, _: pending.append(signum))
        try:
            t0 = time.perf_counter()
            Stack(root=root, services=[s for s in services if s.name != "backend2"]).up()
            stack.up()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, _interrupted)
            if pending:
                raise KeyboardInterrupt
            print(f"stack up ({', '.join(s.name for s in services)}) in {time.perf_counter() - t0:.1f} s")
            yield stack
        except KeyboardInterrupt:
            print("\ninterrupted; stopping the stack")
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup short
                signal.signal(sig, signal.SIG_IGN)
            stack.down()
