"""`POST /v1/chat/completions`: validate, apply a matching fault, answer (whole or streamed), log.

Every request is logged, also a refused one, with what it was answered; the entry is
written before a stream starts (its duration is filled in when the stream ends), so a check
that has read `[DONE]` always finds it.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from standins.llm import policy, tokens
from standins.llm.errors import OpenAIError, injected, validation_error
from standins.llm.policy import Answer
from standins.llm.schemas import ChatRequest
from standins.llm.store import Fault, Standin

WORDS_PER_CHUNK = 3


async def json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise OpenAIError(400, "invalid request: body is not valid JSON", param="body") from None


async def chat_completions(request: Request) -> Response:
    standin: Standin = request.app.state.standin
    started = time.perf_counter()
    raw: Any = None
    entry: dict[str, Any] = {}

    def record(status: int, fault: Fault | None = None, answer: Answer | None = None,
               usage: dict[str, int] | None = None) -> dict[str, Any]:
        return standin.log.add({**_sent(raw), **entry, "status": status, "fault": fault.spec.kind if fault else None,
                                "answer": answer.logged() if answer else None, "usage": usage,
                                "duration_ms": _ms(started)})

    try:
        raw = await json_body(request)
        if not isinstance(raw, dict):
            raise OpenAIError(400, "invalid request: body must be a JSON object", param="body")
        try:
            req = ChatRequest.model_validate(raw)
        except ValidationError as e:
            raise validation_error(e) from None
        entry["role"] = role = policy.role_of(req.messages)
        if req.model not in standin.settings.models:
            raise OpenAIError(404, f"The model '{req.model}' does not exist (served: "
                                   f"{', '.join(standin.settings.models)})", code="model_not_found", param="model")
    except OpenAIError as e:
        record(e.status)
        raise

    fault = standin.faults.take(req.user, req.model, role)
    kind = fault.spec.kind if fault else None
    if fault and kind == "latency":
        await asyncio.sleep((fault.spec.latency_ms or 0) / 1000)
    if fault and kind == "status":
        record(fault.spec.status or 500, fault)
        raise injected(fault.spec.status or 500, fault.id)
    if fault and kind == "content":
        answer = Answer(content=fault.spec.content)
    elif fault and kind == "tool_call" and fault.spec.tool_call:
        answer = Answer(tool_calls=[policy.tool_call(fault.spec.tool_call.name, fault.spec.tool_call.arguments)])
    else:
        answer = policy.answer(req)
    usage = tokens.usage(raw["messages"], raw.get("tools"), answer.content, answer.tool_calls)
    head = {"id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()),
            "model": req.model}

    if kind == "malformed_body":
        logged = record(200, fault)
        whole = json.dumps(_chunks(head, answer, usage, req.include_usage)[0] if req.stream
                           else _completion(head, answer, usage))
        broken = whole[: len(whole) // 2]  # cut mid-object: no JSON parser accepts it
        if not req.stream:
            return Response(broken, 200, media_type="application/json")
        return _stream([f"data: {broken}\n\n", "data: [DONE]\n\n"], logged, started)
    logged = record(200, fault, answer, usage)
    if not req.stream:
        return JSONResponse(_completion(head, answer, usage))
    events = [f"data: {json.dumps(c)}\n\n" for c in _chunks(head, answer, usage, req.include_usage)]
    return _stream([*events, "data: [DONE]\n\n"], logged, started)


def _sent(raw: Any) -> dict[str, Any]:
    """The request as the client sent it, as far as it can be read (also when it is invalid)."""
    body = raw if isinstance(raw, dict) else {}
    tools = body.get("tools") if isinstance(body.get("tools"), list) else None
    return {
        "at": datetime.now(UTC).isoformat(),
        "user": body.get("user") if isinstance(body.get("user"), str) else None,
        "model": body.get("model") if isinstance(body.get("model"), str) else None,
        "role": None,
        "stream": body.get("stream") is True,
        "messages": body.get("messages"),
        "tools": [t.get("function", {}).get("name") for t in tools if isinstance(t, dict)
                  and isinstance(t.get("function"), dict)] if tools is not None else None,
        "tool_choice": body.get("tool_choice"),
        "response_format": body.get("response_format"),
    }


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


def _completion(head: dict[str, Any], answer: Answer, usage: dict[str, int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.tool_calls:
        message["tool_calls"] = answer.tool_calls
    return {**head, "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
            "usage": usage}


def pieces(content: str) -> list[str]:
    """Content split at word boundaries into pieces of a few words: at least three pieces when
    it has three words or more; joined they are the content again."""
    words = re.findall(r"\S+\s*", content)
    if not words:
        return [content] if content else []
    words[0] = content[: len(content) - len(content.lstrip())] + words[0]
    per = max(1, min(WORDS_PER_CHUNK, len(words) // 3))
    return ["".join(words[i:i + per]) for i in range(0, len(words), per)]


def _chunks(head: dict[str, Any], answer: Answer, usage: dict[str, int], include_usage: bool) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        # With include_usage every chunk carries `usage`: null until the last, as OpenAI's do.
        return {**head, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **({"usage": None} if include_usage else {})}

    if answer.tool_calls:
        out = [chunk({"role": "assistant", "content": None,
                      "tool_calls": [{"index": i, **c} for i, c in enumerate(answer.tool_calls)]})]
    else:
        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"content": piece}) for piece in pieces(answer.content or "")]
    out.append(chunk({}, answer.finish_reason))
    if include_usage:
        out.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return out


def _stream(events: list[str], entry: dict[str, Any], started: float) -> StreamingResponse:
    async def send() -> AsyncIterator[str]:
        try:
            for event in events:
                yield event
                await asyncio.sleep(0)  # one write per chunk, as a provider's tokens arrive
        finally:
            entry["duration_ms"] = _ms(started)

    return StreamingResponse(send(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
