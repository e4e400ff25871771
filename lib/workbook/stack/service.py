"""What the stack needs to know about one service: how to launch it and how to ask it.

Each service module (postgres.py, redis.py, ...) defines one `ServiceSpec`. Platform
services added later (auth, backend, LLM stand-in) register the same way in
`workbook.stack.registry`, with `depends_on` naming what must answer first.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import httpx

from workbook.stack.state import Paths, ServiceState, StackState


def find_binary(name: str, override_env: str, package: str, bundled: str) -> Path:
    """A server binary: the path in `override_env`, else the one `package` ships at `bundled`
    (relative to the package), else `name` on PATH. The wheel's comes before PATH because a
    system binary may be another major version than the one the workbook is tested with."""
    if override := os.environ.get(override_env):
        return Path(override)
    spec = find_spec(package)
    if spec and spec.origin and (Path(spec.origin).parent / bundled).exists():
        return Path(spec.origin).parent / bundled
    if on_path := shutil.which(name):
        return Path(on_path).resolve()
    raise FileNotFoundError(f"no {name}: install {package}, put `{name}` on PATH or set {override_env}")


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the stack's own environment
    user: str | None = None  # system user to run as (PostgreSQL refuses to run as root)


class ServiceSpec(ABC):
    name: str
    depends_on: tuple[str, ...] = ()
    user: str | None = None  # the client-side login, not the system user
    database: str | None = None
    start_timeout_s: float = 60.0
    # For second instances (workbook.faults): the variable naming the service's database, and
    # the variables whose values the service writes into shared state when it starts (a second
    # instance may change those only with a database of its own).
    database_env: str | None = None
    shared_state_env: tuple[str, ...] = ()
    # Modules a warm standby imports ahead of the next start (workbook.stack.standby); none: no standby.
    preload: tuple[str, ...] = ()

    @property
    def secret_name(self) -> str:
        """Whose generated password the service answers to: its own, unless it is a copy of
        another (a Redis replica takes its primary's, since Sentinel may make it the primary)."""
        return self.name

    def second_instance_env(self, port: int) -> dict[str, str]:
        """Settings a second instance needs to be told apart from the stack's own (workbook.faults)."""
        return {}

    def scratch_env(self, suffix: str) -> dict[str, str]:
        """Extra settings that keep a second instance with its own database off shared state."""
        return {}

    def scratch_cleanup(self, suffix: str) -> list[str]:
        """SQL (run on the server's maintenance database) undoing what a scratch instance created."""
        return []

    @abstractmethod
    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        """Make the data dir and config ready (idempotent) and say how to start."""

    @abstractmethod
    def url(self, port: int) -> str:
        """The URL clients use; no password in it."""

    @abstractmethod
    def probe(self, url: str, password: str, timeout: float) -> str:
        """Make one real request; return the server's version, raise if it does not answer."""


class PlatformService(ServiceSpec):
    """A service of the platform under test (`python -m app.<name>`): an HTTP server with
    `/health/ready`, started after its dependencies, each with its own database."""

    def dependencies(self, paths: Paths) -> list[ServiceState]:
        """The running dependencies' states, in `depends_on` order; their database created."""
        state = StackState.read(paths)
        missing = [d for d in self.depends_on if d not in state.services]
        if missing:
            raise RuntimeError(f"{self.name} needs {', '.join(missing)} running first")
        return [state.services[n] for n in self.depends_on]

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        r = httpx.get(f"{url}/health/ready", timeout=timeout)
        r.raise_for_status()
        return f"{self.name} {r.json()['version']}"
