"""pytest (and nbmake) bring the embedded stack up for notebooks and take it down after.

The stack starts lazily, before the first notebook item, so `pytest tests/` alone never
pays for it. Under pytest-xdist several workers may ask at once; the stack's file lock
makes the first start it and the rest reuse it. Only the controlling process stops it,
after every worker is done, and only if it was not already running when the session began.
"""

from __future__ import annotations

import os

import pytest

from workbook.env import load_env
from workbook.stack.manager import Stack

_ensured = False


def _embedded() -> bool:
    return load_env(os.environ.get("WORKBOOK_ENV", "local"), resolve=False).stack == "embedded"


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        session.config._workbook_stack_was_up = Stack().any_running()  # type: ignore[attr-defined]


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _ensured
    if _ensured or item.path.suffix != ".ipynb":
        return
    if _embedded():
        Stack().up()
    _ensured = True


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or getattr(config, "_workbook_stack_was_up", True):
        return
    if os.environ.get("WORKBOOK_KEEP_STACK"):
        return
    stack = Stack()
    if stack.state().services:
        stack.down()
