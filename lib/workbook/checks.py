"""The check ledger: `setup()`, `section()`, `check()`, `skip()`, `require()`, `summary()`.

A check is one notebook cell:

    with check("expired_token_rejected") as ck:
        ...plain code and asserts...

A failure is recorded (message, traceback, duration) and swallowed, so the notebook goes on
and one run shows every failure; `summary()` at the end raises if anything failed. The
ledger is rewritten to `ledger_path` after every check, so a kernel killed mid-run still
leaves the results it had.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from workbook.errors import WorkbookError
from workbook.params import Env
from workbook.results import CheckResult, Measurement, NotebookLedger, utcnow
from workbook.settle import wait_settled
from workbook.stack.locks import ServiceLocks

ID_RE = re.compile(r"^[a-z0-9_]+$")


NS_MAX = 63  # PostgreSQL's identifier length: a namespace is also a table name


def namespace(run_id: str, *parts: str) -> str:
    """`wb_<run id>_<parts>`, lower-case letters, digits and `_` only, at most NS_MAX characters:
    a name valid as a table, a key prefix and an email's local part. Everything a run names
    starts with `namespace(run_id)`, which is how the leftovers sweep finds it."""
    raw = "_".join(("wb", run_id, *parts)).lower() + ("" if parts else "_")
    return re.sub(r"[^a-z0-9_]", "_", raw)[:NS_MAX]


class SkipCheck(Exception):
    """Raised by `skip()`; the check is recorded as skipped with the reason."""


class ChecksFailed(AssertionError):
    """Raised by `summary()` so papermill and nbmake mark the notebook failed."""

    def _render_traceback_(self) -> list[str]:
        return [f"ChecksFailed: {self}"]


class Ledger:
    def __init__(self, notebook: str, env: Env, run_id: str, path: Path | None, locks: ServiceLocks | None):
        self.notebook = notebook
        self.env = env
        self.run_id = run_id
        self.path = path
        # On a stack (embedded or external): the per-service locks that keep other notebooks' faults away.
        self.locks = locks
        self.section = ""
        self.running: check | None = None
        # Removing the shared fixtures talks to services like a check does, under the same locks.
        self.finalizing = False
        self.results: dict[str, CheckResult] = {}
        # Cleanups of fixtures made once for the whole notebook (workbook.context.Workbook.shared),
        # run by summary().
        self.finalizers: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    async def finalize(self) -> list[str]:
        """Run the notebook's cleanups, last registered first; what failed, one line each."""
        errors = []
        self.finalizing = True
        if self.locks is not None:
            self.locks.begin()
        try:
            while self.finalizers:
                fn, args = self.finalizers.pop()
                try:
                    if inspect.isawaitable(result := fn(*args)):
                        await result
                except Exception as e:
                    errors.append(f"{getattr(fn, '__name__', fn)}: {_message(e, e.__traceback__)}")
        finally:
            self.finalizing = False
            if self.locks is not None:
                self.locks.end()
        return errors

    @property
    def holds_locks(self) -> bool:
        """Whether requests now take the services' locks (inside a check or the final cleanup)."""
        return self.locks is not None and (self.running is not None or self.finalizing)

    def record(self, result: CheckResult) -> None:
        # Re-running a cell after a fix replaces that check's earlier result.
        self.results.pop(result.id, None)
        self.results[result.id] = result
        if self.path:
            NotebookLedger(notebook=self.notebook, env=self.env.name, run_id=self.run_id,
                           checks=list(self.results.values())).write(self.path)


_ledger: Ledger | None = None


def _current() -> Ledger:
    if _ledger is None:
        raise WorkbookError("call setup(notebook, env=env) in the notebook's first cell before any check")
    return _ledger


def start(notebook: str, env: Env, run_id: str = "", ledger_path: str = "",
          locks: ServiceLocks | None = None) -> Ledger:
    """Start this notebook's ledger (`workbook.setup` calls it); returns it."""
    global _ledger
    run_id = run_id or "i" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    path = Path(ledger_path) if ledger_path else None
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
    _ledger = Ledger(notebook, env, run_id, path, locks)
    return _ledger


async def using(service: str) -> None:
    """The running check talks to `service` (clients call this before a request): on the
    embedded stack it holds that service's lock until the check ends, waiting while another
    notebook's fault has the service down. Outside a check (a notebook's setup cell), it only
    waits for such a fault to end. Elsewhere, nothing."""
    if _ledger is None or _ledger.locks is None:
        return
    locks = _ledger.locks
    if service not in locks.depends_on:
        return
    if not _ledger.holds_locks:
        await asyncio.to_thread(locks.wait_free, service)
    elif locks.would_wait(service):
        await asyncio.to_thread(locks.use, service)


def using_now(service: str) -> None:
    """`using` for synchronous clients (a redis-py or clickhouse-connect client being made)."""
    if _ledger is None or _ledger.locks is None or not _ledger.holds_locks:
        return
    if service in _ledger.locks.depends_on:
        _ledger.locks.use(service)


def running() -> check | None:
    """The check running now, if any."""
    return _ledger.running if _ledger is not None else None


# A notebook-wide fixture being made (workbook.context.Workbook.shared), inside whichever check
# first asked for it: what it creates outlives that check.
_fixture: ContextVar[Any] = ContextVar("workbook_fixture", default=None)


def owner() -> Any:
    """Who removes what a client creates as a side effect (a user it registered): the shared
    fixture being made, else the running check, else nobody (None). Has `defer(fn, *args)`."""
    return _fixture.get() or running()


@contextmanager
def making_fixture(scope: Any) -> Iterator[None]:
    token = _fixture.set(scope)
    try:
        yield
    finally:
        _fixture.reset(token)


def current() -> Ledger:
    """The running notebook's ledger (setup() started it)."""
    return _current()


def locks() -> ServiceLocks | None:
    """The running notebook's per-service locks (None in an env without services: `stack: none`)."""
    return _current().locks


def section(name: str) -> None:
    if not ID_RE.match(name):
        raise WorkbookError(f"section id {name!r} must be lower_snake_case")
    _current().section = name


def skip(reason: str) -> None:
    raise SkipCheck(reason)


def require(kind: Literal["destructive", "load"]) -> None:
    """Skip the running check unless the env allows this kind; production never does."""
    env = _current().env
    if not env.allows(kind):
        why = "it is production" if env.is_production else f"its params do not enable {kind} checks"
        skip(f"env '{env.name}' refuses {kind} checks: {why}")


def _message(exc: BaseException, tb: TracebackType | None) -> str:
    text = str(exc).strip()
    if not text and tb is not None:
        # A bare `assert x == y` has no message: the failing line says what was asserted.
        text = (traceback.extract_tb(tb)[-1].line or "").strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class check:
    """One check; use as `with check("id") as ck:` (or `async with` for async cleanups).

    `alone=("backend", "backend2")`: on the embedded stack, no check of another notebook uses
    these services (or what depends on them) while this one runs: for a check that kills or
    restarts them (`workbook.faults`), or that reads counters every client moves (an instance's
    connection gauge), which run_all's parallel notebooks would otherwise move under it.

    `serial="model_failures"`: on the embedded stack, no other check opened with that name runs
    at the same time, in any notebook or run; for checks that each move a shared count a little
    (failures in a row on the model breaker) that two at once would push over its bound. Such a
    check makes no fault (`workbook.stack.locks`).

    `quiet=True`: no check of another notebook runs meanwhile, on any stack of this checkout; for
    a check that times the platform against a budget measured here (`params` says which), which
    another notebook's work on the machine's cores would time instead.
    """

    def __init__(self, name: str, alone: tuple[str, ...] = (), serial: str = "", quiet: bool = False):
        if not ID_RE.match(name):
            raise WorkbookError(f"check id {name!r} must be lower_snake_case")
        if alone and serial:
            raise WorkbookError(f"check {name!r}: alone= already keeps every other check away; drop serial=")
        ledger = _current()
        if not ledger.section:
            raise WorkbookError(f"check {name!r} comes before any section(): open one first")
        self.name = name
        self.ledger = ledger
        self.id = f"{ledger.notebook}.{ledger.section}.{name}"
        self._cleanups: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._measurements: list[Measurement] = []
        self.alone = alone
        self.serial = serial
        self.quiet = quiet
        self._t0 = 0.0
        self._started = ""

    @property
    def ns(self) -> str:
        """This check's own namespace for users, keys, rows and tables (run id + check id)."""
        return namespace(self.ledger.run_id, self.ledger.section, self.name)

    def measure(self, name: str, value: float, unit: str = "ms", budget: float | None = None) -> float:
        """Record a figure this check measured (into results.json, passed or not); returns it, so
        `assert ck.measure("p95", p95, budget=b) <= b` reads as one line."""
        self._measurements.append(Measurement(name=name, value=round(float(value), 3), unit=unit, budget=budget))
        return value

    async def hold(self, *services: str) -> None:
        """Take now the services this check will use later, in a step on a clock (a token about to
        expire): a client takes each at its first request, and waiting there behind another
        notebook's fault would eat the clock."""
        for service in services:
            await using(service)

    def defer(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` when the check ends, passed or failed; last registered runs first."""
        self._cleanups.append((fn, args))

    def _lock(self) -> None:
        # The check's time starts before its wait for other notebooks' faults: that wait is
        # reported in its own field (waited_s), not hidden.
        self._t0 = time.perf_counter()
        self._started = utcnow()
        locks = self.ledger.locks
        if locks is not None:
            locks.waited()  # what earlier waits cost belongs to no check
            locks.machine(self.quiet)
            if self.alone:
                locks.exclusive(self.alone)
            else:
                locks.begin()
                if self.serial:
                    locks.serial(self.serial)

    def _begin(self) -> check:
        self.ledger.running = self
        return self

    def __enter__(self) -> check:
        self._lock()
        return self._begin()

    # A failing cleanup must not hide the check's own result: the first error is kept and
    # reported only if the check itself passed.
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        error = None
        for fn, args in reversed(self._cleanups):
            try:
                if inspect.isawaitable(result := fn(*args)):
                    result.close()  # type: ignore[attr-defined]
                    raise WorkbookError(f"cleanup {fn.__name__} is async: use `async with check(...)`")
            except Exception as e:
                error = error or e
        return self._finish(exc, tb, error or self._settle())

    def _settle(self) -> WorkbookError | None:
        """A check that held services alone hands them back settled (workbook.settle)."""
        locks = self.ledger.locks
        if locks is None or not locks.exclusive_now:
            return None
        try:
            wait_settled(self.ledger.env, locks.exclusive_now)
        except WorkbookError as e:
            return e
        return None

    async def __aenter__(self) -> check:
        # Waiting for another notebook's fault to end must not stall this kernel's event loop.
        await asyncio.to_thread(self._lock)
        return self._begin()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        error = None
        for fn, args in reversed(self._cleanups):
            try:
                if inspect.isawaitable(result := fn(*args)):
                    await result
            except Exception as e:
                error = error or e
        return self._finish(exc, tb, error or await asyncio.to_thread(self._settle))

    def _finish(self, exc: BaseException | None, tb: TracebackType | None,
                cleanup_error: BaseException | None) -> bool:
        self.ledger.running = None
        waited = 0.0
        if self.ledger.locks is not None:
            self.ledger.locks.end()
            waited = self.ledger.locks.waited()
        duration = time.perf_counter() - self._t0
        if exc is None and cleanup_error is not None:
            exc = WorkbookError(f"cleanup failed: {_message(cleanup_error, cleanup_error.__traceback__)}")
            tb = cleanup_error.__traceback__
        if exc is None:
            status, message, tb_text = "passed", "", ""
        elif isinstance(exc, SkipCheck):
            status, message, tb_text = "skipped", str(exc), ""
        else:
            status = "failed"
            message = _message(exc, tb)
            tb_text = "".join(traceback.format_exception(type(exc), exc, tb))
        self.ledger.record(CheckResult(
            id=self.id, notebook=self.ledger.notebook, section=self.ledger.section, check=self.name,
            status=status, duration_s=round(duration, 4), message=message, traceback=tb_text,
            started_at=self._started, waited_s=round(waited, 3), measurements=self._measurements,
        ))
        mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[status]
        print(f"{mark} {self.id} ({duration * 1000:.0f} ms){' - ' + message if message else ''}")
        if status == "failed" and tb_text:
            print(tb_text, file=sys.stderr)
        # Swallow ordinary exceptions so the notebook goes on; let interrupts and exits through.
        return exc is None or isinstance(exc, Exception)


def results() -> list[CheckResult]:
    return list(_current().results.values())


async def summary() -> None:
    """The notebook's last cell (`await summary()`): remove what the notebook's shared fixtures
    made, show the results, and raise listing every failed check if any failed (or if removing
    a fixture failed, which would leave it behind)."""
    from workbook.display import show_summary

    ledger = _current()
    teardown_errors = await ledger.finalize()
    recorded = results()
    show_summary(ledger.notebook, recorded)
    failed = [r for r in recorded if r.status == "failed"]
    if teardown_errors:
        raise ChecksFailed(f"{ledger.notebook}: removing shared fixtures failed: " + "; ".join(teardown_errors))
    if not recorded:
        raise ChecksFailed(f"{ledger.notebook}: no check ran")
    if failed:
        lines = "\n".join(f"  {r.id}: {r.message}" for r in failed)
        raise ChecksFailed(f"{len(failed)} of {len(recorded)} checks failed in {ledger.notebook}:\n{lines}")
