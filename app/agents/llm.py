"""The LLM client every agent uses: OpenAI-compatible chat completions, with tool calls and
streaming, retries with backoff, a fallback model and a circuit breaker on the provider.

A retryable failure (429, 5xx, a transport error, an answer that is not the protocol) is
retried `llm_retries` times with doubling backoff (a larger `Retry-After` wins); then the
fallback model gets the same chances. A 4xx other than 429 is the request's fault: no retry.
Every attempt passes the provider's breaker, so a dead provider is not hammered by every run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.common.breaker import BreakerOpen, CircuitBreaker
from app.common.settings import BackendSettings

Delta = Callable[[str], Awaitable[None]]


class LlmError(Exception):
    """`code`: llm_unavailable (retries and fallback exhausted, or breaker open), llm_rejected (4xx)."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class ProviderFailure(Exception):
    """A failure worth retrying (and counted by the provider's breaker)."""

    def __init__(self, reason: str, retry_after_s: float = 0.0):
        super().__init__(reason)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Endpoint:
    """A user's own provider (their provider connection), called instead of the platform's."""

    base_url: str
    api_key: str = field(repr=False)
    connection_id: str = ""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # as the model wrote it: may not even be JSON


@dataclass
class Completion:
    model: str
    content: str | None
    tool_calls: list[ToolCall]
    prompt_tokens: int
    completion_tokens: int
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every failed try before this answer

    @property
    def fallback_used(self) -> bool:
        return any(a["model"] != self.model for a in self.attempts)


class LlmClient:
    def __init__(self, settings: BackendSettings, http: httpx.AsyncClient, breaker: CircuitBreaker):
        self.settings, self.http, self.breaker = settings, http, breaker
        self.base = settings.llm_base_url.rstrip("/")

    @property
    def models(self) -> list[str]:
        s = self.settings
        return [s.llm_model] + ([s.llm_fallback_model] if s.llm_fallback_model and s.llm_fallback_model != s.llm_model
                                else [])

    async def complete(self, messages: list[dict[str, Any]], *, user: str, tools: list[dict[str, Any]] | None = None,
                       json_output: bool = False, on_delta: Delta | None = None,
                       endpoint: Endpoint | None = None) -> Completion:
        """One chat completion; streamed when `on_delta` is given (called with each piece of content).
        With `endpoint` the user's own provider answers; its failures do not count against the
        platform provider's breaker (one user's bad provider must not stop everyone's runs)."""
        attempts: list[dict[str, Any]] = []
        for model in self.models:
            body: dict[str, Any] = {"model": model, "messages": messages, "user": user}
            if tools:
                body["tools"] = tools
            if json_output:
                body["response_format"] = {"type": "json_object"}
            if on_delta is not None:
                body |= {"stream": True, "stream_options": {"include_usage": True}}
            for attempt in range(self.settings.llm_retries + 1):
                t0 = time.perf_counter()
                try:
                    done = (await self._once(body, on_delta, endpoint) if endpoint is not None
                            else await self.breaker.call(lambda: self._once(body, on_delta)))
                    done.attempts = attempts
                    return done
                except BreakerOpen as e:
                    # This call's own failures may be what opened it: they are the reason worth telling.
                    tried = f" after {_tried(attempts)}" if attempts else ""
                    raise LlmError("llm_unavailable", f"the model provider's circuit breaker is open{tried} "
                                                      f"(retry in {e.retry_after_s:.0f} s)") from None
                except ProviderFailure as e:
                    attempts.append({"model": model, "attempt": attempt + 1, "error": str(e),
                                     "ms": round((time.perf_counter() - t0) * 1000, 1)})
                    if attempt < self.settings.llm_retries:
                        await asyncio.sleep(max(e.retry_after_s, self.settings.llm_backoff_s * 2 ** attempt))
        raise LlmError("llm_unavailable", f"the model provider failed every attempt ({_tried(attempts)})")

    async def _once(self, body: dict[str, Any], on_delta: Delta | None, endpoint: Endpoint | None = None) -> Completion:
        key = endpoint.api_key if endpoint else self.settings.secret("llm_api_key") or ""
        headers = {"Authorization": f"Bearer {key}"}
        url = f"{endpoint.base_url.rstrip('/') if endpoint else self.base}/chat/completions"
        try:
            if on_delta is None:
                resp = await self.http.post(url, json=body, headers=headers, timeout=self.settings.llm_timeout_s)
                self._check(resp.status_code, resp.headers, resp.text)
                return _parse(body["model"], resp)
            async with self.http.stream("POST", url, json=body, headers=headers,
                                        timeout=self.settings.llm_timeout_s) as resp:
                if resp.status_code != 200:
                    self._check(resp.status_code, resp.headers, (await resp.aread()).decode(errors="replace"))
                return await _read_stream(body["model"], resp, on_delta)
        except httpx.TransportError as e:
            raise ProviderFailure(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None

    @staticmethod
    def _check(status: int, headers: httpx.Headers, text: str) -> None:
        if status == 200:
            return
        reason = _error_message(text) or f"HTTP {status}"
        if status == 429 or status >= 500:
            raise ProviderFailure(f"{status} {reason}", float(headers.get("retry-after") or 0))
        raise LlmError("llm_rejected", f"the model provider refused the request: {status} {reason}")


def _tried(attempts: list[dict[str, Any]]) -> str:
    return "; ".join(f"{a['model']} try {a['attempt']}: {a['error']}" for a in attempts)


def _error_message(text: str) -> str:
    try:
        return str(json.loads(text)["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return ""


def _parse(model: str, resp: httpx.Response) -> Completion:
    try:
        data = resp.json()
        message = data["choices"][0]["message"]
        calls = [ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"])
                 for c in message.get("tool_calls") or []]
        usage = data.get("usage") or {}
        return Completion(data.get("model", model), message.get("content"), calls,
                          int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ProviderFailure(f"malformed answer ({type(e).__name__})") from None


async def _read_stream(model: str, resp: httpx.Response, on_delta: Delta) -> Completion:
    content: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage: dict[str, Any] = {}
    try:
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    content.append(delta["content"])
                    await on_delta(delta["content"])
                for c in delta.get("tool_calls") or []:
                    into = calls.setdefault(c.get("index", 0), {"id": "", "name": "", "arguments": ""})
                    into["id"] = c.get("id") or into["id"]
                    fn = c.get("function") or {}
                    into["name"] += fn.get("name") or ""
                    into["arguments"] += fn.get("arguments") or ""
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ProviderFailure(f"malformed stream ({type(e).__name__})") from None
    return Completion(model, "".join(content) if content else None,
                      [ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())],
                      int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
