"""Client of the env's model provider as the workbook sees it: the LLM stand-in's request log
and fault injection (`standins/llm`), and the OpenAI-compatible `/v1` any provider has.

    llm = platform.llm(wb)
    await llm.fault(ck, user.id, "status", count=2, status=500)   # the user's next 2 model calls fail
    log = await llm.requests(user.id)                              # what the platform sent, in order

Faults and log entries are scoped by the OpenAI `user` field, which the platform sets to the
run owner's id, so concurrent checks never see each other's. `fault` and `requests` need the
stand-in (`expect.agents.llm_standin` in params); against a real provider the calling check
is skipped with the reason. The provider's key is a secret: it goes in a header, never a message.
"""

from __future__ import annotations

from typing import Any

import httpx

from workbook.checks import skip
from workbook.clients.scope import Check
from workbook.clients.platform.common import ApiClient, expect
from workbook.params import Env


class AsyncLlm(ApiClient):
    def __init__(self, env: Env, service: str = "llm"):
        super().__init__(env, service)
        self.root = self.url.removesuffix("/v1")
        self._key = env.service(service).secret() or ""
        self.standin = env.expect.agents.llm_standin

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """`path` under the provider's base URL (`/models`) or the stand-in's root (`/_standin/...`)."""
        url = f"{self.root}{path}" if path.startswith("/_standin") else f"{self.url}{path}"
        return await self.request(method, url, token=self._key, **kwargs)

    def _need_standin(self, what: str) -> None:
        if not self.standin:
            skip(f"env '{self.env.name}': {what} needs the LLM stand-in (expect.agents.llm_standin)")

    async def models(self) -> list[str]:
        return [m["id"] for m in expect(await self.call("GET", "/models"), 200, "GET /v1/models").json()["data"]]

    async def requests(self, user_id: str, since: int = 0) -> list[dict[str, Any]]:
        """The stand-in's log of `user_id`'s model calls (oldest first; ids above `since`)."""
        self._need_standin("reading the model's request log")
        resp = await self.call("GET", "/_standin/requests", params={"user": user_id, "since": since})
        return expect(resp, 200, "stand-in request log").json()["requests"]

    async def faults(self, user_id: str) -> list[dict[str, Any]]:
        """`user_id`'s faults the stand-in has not spent yet (one leaves as its last call arrives)."""
        self._need_standin("reading pending faults")
        resp = await self.call("GET", "/_standin/faults", params={"user": user_id})
        return expect(resp, 200, "stand-in faults").json()["faults"]

    async def fault(self, ck: Check, user_id: str, kind: str, count: int, **fields: Any) -> dict[str, Any]:
        """Make the stand-in misbehave for `user_id`'s next `count` model calls (cleared with the check).
        kinds: status (status=429/500/502/503), latency (latency_ms), malformed_body, content, tool_call."""
        self._need_standin(f"injecting a '{kind}' fault")
        ck.defer(self.clear, user_id)
        resp = await self.call("POST", "/_standin/faults", json={"user": user_id, "kind": kind, "count": count,
                                                                 **fields})
        return expect(resp, 201, f"stand-in fault {kind}").json()

    async def clear(self, user_id: str) -> None:
        """Drop `user_id`'s faults and log entries."""
        for path in ("/_standin/faults", "/_standin/requests"):
            expect(await self.call("DELETE", path, params={"user": user_id}), 204, f"DELETE {path}")


def llm(env: Env, service: str = "llm") -> AsyncLlm:
    return AsyncLlm(env, service)
