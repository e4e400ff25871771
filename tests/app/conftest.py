"""A real stack (PostgreSQL, Redis, OIDC provider, auth) for the auth service's integration tests,
and an LLM stand-in for the model client's.

One stack per test session; tests that need other settings start their own auth process
against the same PostgreSQL and Redis with `spawn_auth`.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from auth_support import BACKEND_DEPENDENCIES, DEPENDENCIES, AuthStack, random_ip

from workbook.stack.auth import AuthService
from workbook.stack.backend import BackendService
from workbook.stack.llm_standin import LlmStandin
from workbook.stack.manager import Stack
from workbook.stack.state import stack_secret


@pytest.fixture(scope="session")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    root = tmp_path_factory.mktemp("authstack")
    stack = Stack(root=root, services=[*DEPENDENCIES, AuthService()])
    try:
        stack.up()
        yield AuthStack(stack, stack.state().services["auth"].url)
    finally:
        stack.down()


@pytest.fixture
def client(auth_stack: AuthStack) -> Iterator[httpx.Client]:
    """A client with its own (forwarded) IP, so tests do not share the per-IP login limit."""
    with httpx.Client(base_url=auth_stack.url, timeout=30, headers={"X-Forwarded-For": random_ip()}) as c:
        yield c


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL ending in /v1, API key) of an LLM stand-in the stack started."""
    stack = Stack(root=tmp_path_factory.mktemp("llmstack"), services=[LlmStandin()])
    try:
        stack.up()
        yield stack.state().services["llm"].url, stack_secret(stack.paths, "llm")
    finally:
        stack.down()


@pytest.fixture(scope="module")
def stack(auth_stack: AuthStack) -> Stack:
    """The session's auth stack plus a backend (stopped with the rest at session end)."""
    stack = Stack(root=auth_stack.stack.paths.root,
                  services=[*DEPENDENCIES, AuthService(), *BACKEND_DEPENDENCIES, BackendService()])
    stack.up()
    return stack


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    """A client of the backend in `stack`."""
    with httpx.Client(base_url=stack.state().services["backend"].url, timeout=30) as c:
        yield c
