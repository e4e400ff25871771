"""The stand-ins as the stack starts them: real processes on free ports, one per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workbook.stack.llm_standin import LlmStandin
from workbook.stack.manager import Stack
from workbook.stack.state import stack_secret


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL ending in /v1, API key) of an LLM stand-in the stack started."""
    stack = Stack(root=tmp_path_factory.mktemp("llmstack"), services=[LlmStandin()])
    try:
        stack.up()
        yield stack.state().services["llm"].url, stack_secret(stack.paths, "llm")
    finally:
        stack.down()
