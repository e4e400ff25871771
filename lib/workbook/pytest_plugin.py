"""The workbook's pytest plugin (registered through the `pytest11` entry point): brings the
embedded stack up for notebook items and takes it down after, by the rule of
`workbook.stack.lifecycle`; and loads `workbook.pytest_notebooks`, which makes each check of a
workbook notebook its own item under `--nbmake`.

The stack starts lazily, before the first notebook item, so `pytest tests/` alone never pays for
it. Under pytest-xdist every worker may ask at once; the stack's file lock makes the first start
it and the rest reuse it. Only the controlling process stops it, after every worker is done.
`WORKBOOK_ENV` picks the env (default local); `WORKBOOK_KEEP_STACK=1` keeps the stack.
"""

from __future__ import annotations

import os

import pytest

from workbook.stack.lifecycle import StackLease

pytest_plugins = ["workbook.pytest_notebooks"]

_lease = pytest.StashKey[StackLease]()
_ensured = pytest.StashKey[bool]()


def workbook_env() -> str:
    return os.environ.get("WORKBOOK_ENV", "local")


def ensure_stack(config: pytest.Config) -> None:
    """The env's stack is up (started at most once per process)."""
    if config.stash.get(_ensured, False):
        return
    config.stash[_lease].up()
    config.stash[_ensured] = True


def pytest_sessionstart(session: pytest.Session) -> None:
    keep = bool(os.environ.get("WORKBOOK_KEEP_STACK"))
    worker = hasattr(session.config, "workerinput")
    session.config.stash[_lease] = StackLease(workbook_env(), keep=keep, holds=not worker)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.path.suffix == ".ipynb":
        ensure_stack(item.config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    if (lease := session.config.stash.get(_lease, None)) is not None:
        lease.release()


@pytest.fixture(scope="session")
def embedded_stack(request: pytest.FixtureRequest) -> None:
    """For a test (not a notebook) that needs the env's stack up: the same lease as the notebooks,
    so the stack it starts is reused by them and stopped by the same rule."""
    request.config.stash[_lease].up()
