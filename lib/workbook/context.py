"""`setup()`: what a notebook's setup cell calls, and the context it hands back.

    wb = setup("01_auth", env=env, run_id=run_id, ledger_path=ledger_path)
    auth, backend = wb.auth, wb.backend

The context holds the env (params with endpoints and secrets resolved) and the platform's
clients under names that say what they are; each client is made when first used. Clients of
the stores (PostgreSQL, Redis, ClickHouse) are made per check with `workbook.clients.*.for_check`,
so each is closed with its check.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from workbook import checks
from workbook.clients.platform import AsyncAuth, AsyncBackend, AsyncLlm, auth, backend, llm
from workbook.env import load_env
from workbook.params import Budgets, Env, Expect, Timeouts
from workbook.paths import project_root
from workbook.stack.locks import ServiceLocks
from workbook.stack.registry import SERVICES
from workbook.stack.state import Paths


@dataclass
class Workbook:
    notebook: str
    env: Env
    run_id: str

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
    if env.stack != "embedded":
        return None
    return ServiceLocks(Paths(project_root()).base / "locks", {s.name: s.depends_on for s in SERVICES})


def setup(notebook: str, env: str = "local", run_id: str = "", ledger_path: str = "") -> Workbook:
    """Load the env (one clear line if it cannot) and start this notebook's ledger."""
    loaded = load_env(env)
    ledger = checks.start(notebook, loaded, run_id, ledger_path, _locks(loaded))
    return Workbook(notebook, loaded, ledger.run_id)
