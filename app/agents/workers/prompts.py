"""Prompt pieces every agent uses: the system message naming the agent, the thread's history
cut to the token budget, and the repair turn for an answer that did not validate."""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from app.agents.llm import ToolCall
from app.agents.scope import AgentFailure, RunScope
from app.agents.tools import Tool
from app.common import tokens
from app.common.tables import messages as thread_messages

HISTORY_LIMIT = 200  # messages read before cutting to the token budget


def system(agent: str, instructions: str) -> dict[str, str]:
    # The first line names the agent: providers ignore it, the LLM stand-in answers by it.
    return {"role": "system", "content": f"agent: {agent}\n{instructions}"}


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def facts(**items: Any) -> str:
    """`name: value` lines; values that are not plain strings as JSON."""
    return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v, default=str)}" for k, v in items.items())


async def history(scope: RunScope, exclude: str | None) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The thread's messages, oldest first, keeping the newest that fit `context_max_tokens`."""
    async with scope.services.db.connect() as conn:
        rows = (await conn.execute(select(thread_messages.c.id, thread_messages.c.role, thread_messages.c.content)
                                   .where(thread_messages.c.thread_id == uuid.UUID(scope.ctx.thread_id))
                                   .order_by(thread_messages.c.created_at.desc(), thread_messages.c.id.desc())
                                   .limit(HISTORY_LIMIT))).all()
    budget, kept, used = scope.limits.context_max_tokens, [], 0
    candidates = [r for r in rows if str(r.id) != exclude]
    for r in candidates:
        cost = tokens.count(r.content) + 4
        if used + cost > budget:
            break
        kept.append({"role": r.role, "content": r.content})
        used += cost
    kept.reverse()
    return kept, {"history_messages": len(kept), "history_tokens": used,
                  "history_dropped": len(candidates) - len(kept), "context_max_tokens": budget}


async def validated(scope: RunScope, agent: str, messages: list[dict[str, Any]], model: type[BaseModel],
                    again: str, note: dict[str, Any] | None = None,
                    context: dict[str, Any] | None = None) -> BaseModel:
    """A JSON answer that must validate: one repair turn naming the bad fields, then the agent fails."""
    for attempt in (1, 2):
        done = await scope.think(agent, messages, json_output=True, note={**(note or {}), "attempt": attempt})
        try:
            return model.model_validate_json(done.content or "", context=context)
        except ValidationError as e:
            fields = sorted({".".join(str(p) for p in err["loc"]) or "answer" for err in e.errors()})
            if attempt == 2:
                raise AgentFailure(agent, "invalid_model_output",
                                   f"{agent}: the model's answer failed validation twice ({', '.join(fields)})") from None
            # Only the field names go back: the validator's wording could steer the answer.
            messages = [*messages, {"role": "assistant", "content": done.content or ""},
                        user(f"Your previous answer did not validate (fields: {', '.join(fields)}). "
                             f"Answer again with JSON only.\n{again}")]
    raise AssertionError("unreachable")


async def tool_round(scope: RunScope, agent: str, instructions: str, ask: str,
                     tools: list[Tool[RunScope]]) -> tuple[ToolCall, Any, str]:
    """The model calls one of the tools, gets the result back, and says what it found."""
    messages: list[dict[str, Any]] = [system(agent, instructions), user(ask)]
    done = await scope.think(agent, messages, tools=tools)
    if not done.tool_calls:
        raise AgentFailure(agent, "no_tool_call", f"the model called none of {', '.join(t.name for t in tools)}")
    call = done.tool_calls[0]
    result = await scope.use_tool(agent, tools, call)
    messages += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]},
                 {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result, default=str)}]
    summary = await scope.think(agent, messages)
    return call, result, summary.content or ""
