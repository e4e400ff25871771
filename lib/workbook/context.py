"""`setup()`: what a notebook's setup cell calls, and the context it hands back.

    wb = setup("01_auth", env=env, run_id=run_id, ledger_path=ledger_path)
    auth, backend = wb.auth, wb.backend

The context holds the env (params with endpoints and secrets resolved) and the platform's
clients under names that say what they are; each client is made when first used. Clients of
the stores (PostgreSQL, Redis, ClickHouse) are made per check with `workbook.clients.*.for_check`,
so each is closed with its check.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from workbook import checks
from workbook.clients.platform import AsyncAuth, AsyncBackend, AsyncLlm, auth, backend, llm
from workbook.env import load_env
from workbook.params import Budgets, Env, Expect, Timeouts
from workbook.paths import project_root
from workbook.stack.locks import ServiceLocks
from workbook.stack.registry import SERVICES
from workbook.stack.state import Paths


T = TypeVar("T")


class SharedFixtureFailed(AssertionError):
    """A check needs a shared fixture that failed to be made in an earlier check."""


@dataclass
class NotebookScope:
    """What a shared fixture's maker gets in place of a check: a namespace of its own under the
    run's, and a `defer` whose cleanups `summary()` runs at the notebook's end."""

    ns: str
    ledger: checks.Ledger

    def defer(self, fn: Callable[..., Any], *args: Any) -> None:
        self.ledger.finalizers.append((fn, args))


@dataclass
class Workbook:
    notebook: str
    env: Env
    run_id: str
    _shared: dict[str, Any] = field(default_factory=dict, repr=False)
    _unmade: dict[str, Exception] = field(default_factory=dict, repr=False)

    async def shared(self, name: str, make: Callable[[NotebookScope], Awaitable[T]]) -> T:
        """A fixture made once for the whole notebook and removed at its end (by `summary()`): for
        what many checks need and none changes, e.g. a logged-in member with a thread to read. A
        check that changes what it gets makes its own instead.

            reader = await wb.shared("reader", lambda scope: auth.new_user(scope))
        """
        # A fixture whose making failed is not made again: a second try would reuse the namespace
        # the first may have half-filled (a backup name that now exists), and each later check
        # would fail on that instead of on the cause.
        if name in self._unmade:
            cause = self._unmade[name]
            if isinstance(cause, checks.SkipCheck):  # what made the first check skip skips the rest
                raise checks.SkipCheck(str(cause))
            raise SharedFixtureFailed(f"shared fixture {name!r} could not be made earlier: "
                                      f"{type(cause).__name__}: {cause}"[:400])
        if name not in self._shared:
            ns = re.sub(r"[^a-z0-9_]", "_", f"wb_{self.run_id}_{self.notebook}_{name}".lower())[:63]
            scope = NotebookScope(ns, checks.current())
            with checks.making_fixture(scope):
                try:
                    self._shared[name] = await make(scope)
                except Exception as e:
                    self._unmade[name] = e
                    raise
        return self._shared[name]

    @property
    def expect(self) -> Expect:
        return self.env.expect

    @property
    def budgets(self) -> Budgets:
        return self.env.budgets

    @property
    def timeouts(self) -> Timeouts:
        return self.env.timeouts

    @cached_property
    def auth(self) -> AsyncAuth:
        """The auth service."""
        return auth(self.env)

    @cached_property
    def backend(self) -> AsyncBackend:
        """Backend instance A."""
        return backend(self.env)

    @cached_property
    def backend2(self) -> AsyncBackend:
        """Backend instance B: the same database and Redis as A."""
        return backend(self.env, "backend2")

    @cached_property
    def model(self) -> AsyncLlm:
        """The model provider the agents call (on the embedded stack: the stand-in's log and faults)."""
        return llm(self.env)


def _locks(env: Env) -> ServiceLocks | None:
    # An external stack is locked too: not against its other users (nothing can be), but so the
    # notebooks of one run keep out of each other's way, as on the embedded stack (a check reading
    # instance-wide counters `alone` must not count another notebook's agent runs).
    if env.stack == "none":
        return None
    root = project_root()
    return ServiceLocks(Paths(root).base / "locks", {s.name: s.depends_on for s in SERVICES},
                        machine_dir=root / "outputs" / ".locks")


def setup(notebook: str, env: str = "local", run_id: str = "", ledger_path: str = "") -> Workbook:
    """Load the env (one clear line if it cannot) and start this notebook's ledger."""
    loaded = load_env(env)
    ledger = checks.start(notebook, loaded, run_id, ledger_path, _locks(loaded))
    return Workbook(notebook, loaded, ledger.run_id)
