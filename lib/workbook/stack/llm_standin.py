"""The LLM stand-in (`python -m standins.llm`): the OpenAI-compatible model server the
platform's agents call in local runs, in place of a real provider.

Its URL is the OpenAI base URL (`http://127.0.0.1:<port>/v1`), as a provider's is in other
envs, so a client appends `/chat/completions` the same way everywhere; the stand-in's own
`/health` and `/_standin/*` live beside `/v1`. The password the stack hands it is its API key.
"""

from __future__ import annotations

import sys

import httpx

from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths


def root_url(url: str) -> str:
    """The stand-in's own root (where /health and /_standin/* are) from its base URL."""
    return url.rstrip("/").removesuffix("/v1")


class LlmStandin(ServiceSpec):
    name = "llm"
    start_timeout_s = 30.0

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        return Launch(argv=[sys.executable, "-m", "standins.llm", "--host", "127.0.0.1", "--port", str(port)],
                      env={"LLM_STANDIN_ENV": "local", "LLM_STANDIN_API_KEY": password})

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/v1"

    def probe(self, url: str, password: str, timeout: float) -> str:
        r = httpx.get(f"{root_url(url)}/health", timeout=timeout)
        r.raise_for_status()
        return f"llm-standin {r.json()['version']}"


class UserLlmStandin(LlmStandin):
    """A second model provider with its own key: the one a user connects as their own provider
    (provider connections), so a run of theirs is seen arriving here and not at the platform's."""

    name = "llm_user"
