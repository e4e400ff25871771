"""The stand-in's documented tokenizer, so a check can recount any answer's usage.

    count(text)       = number of matches of  \\w+|[^\\w\\s]  (words and punctuation marks)
    prompt_tokens     = sum over messages of (count(text of content) + 4)
                        + for each assistant message with tool_calls:
                          count(json.dumps([call["function"]["arguments"] for call in tool_calls]))
                        + count(json.dumps(tools)) when tools are given
    completion_tokens = count(content), or for a tool-call answer
                        count(json.dumps([call["function"] for call in tool_calls]))

"text of content" is the string itself, the text parts of a list content joined by "\\n",
or "" for none. Messages and tools are counted as the client sent them (JSON key order kept).
Not any provider's tokenizer: it only has to be honest and reproducible.
"""

from __future__ import annotations

import json
import re
from typing import Any

PER_MESSAGE = 4  # role and separators, as providers charge for them too
_TOKEN = re.compile(r"\w+|[^\w\s]")


def count(text: str) -> int:
    return len(_TOKEN.findall(text))


def content_text(content: Any) -> str:
    """A message's content as text: a string, the text parts of a list of parts, or ""."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def prompt_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
    total = 0
    for m in messages:
        total += count(content_text(m.get("content"))) + PER_MESSAGE
        if m.get("role") == "assistant" and m.get("tool_calls"):
            total += count(json.dumps([c["function"]["arguments"] for c in m["tool_calls"]]))
    if tools:
        total += count(json.dumps(tools))
    return total


def completion_tokens(content: str | None, tool_calls: list[dict[str, Any]] | None) -> int:
    if tool_calls:
        return count(json.dumps([c["function"] for c in tool_calls]))
    return count(content or "")


def usage(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
          content: str | None, tool_calls: list[dict[str, Any]] | None) -> dict[str, int]:
    prompt, completion = prompt_tokens(messages, tools), completion_tokens(content, tool_calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
