"""Tools and the dispatcher: the model names a tool and writes its arguments; nothing runs
until the name is known and the arguments validate against that tool's JSON schema.

A bad call (unknown tool, arguments that are not JSON or break the schema, a tool that raised
or timed out) is a `ToolFailure` with a machine-readable code: the step fails, never the process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from jsonschema import Draft202012Validator

from app.common import tracing

log = logging.getLogger("app.agents.tools")
# What a handler acts through (the agents' RunScope). A type parameter rather than an import:
# the scope runs tools through this dispatcher, so this module stays below it.
S = TypeVar("S")
Handler = Callable[[S, dict[str, Any]], Awaitable[Any]]
Undo = Callable[[S, dict[str, Any], Any], Awaitable[None]]


class ToolFailure(Exception):
    """code: unknown_tool, invalid_arguments, tool_timeout, forbidden, tool_error."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class Tool(Generic[S]):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    handler: Handler[S]
    # A tool that writes where cancelling cannot stop it (a ClickHouse call in a worker thread)
    # names how to take the write back: past its timeout it is let finish, then undone.
    undo: Undo[S] | None = None

    def spec(self) -> dict[str, Any]:
        """As offered to the model (OpenAI `tools` entry)."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


def validate(tool: Tool[Any], raw: str) -> dict[str, Any]:
    try:
        args = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        raise ToolFailure("invalid_arguments", f"{tool.name}: arguments are not JSON ({e.msg})") from None
    except ValueError:
        # Valid JSON the parser will not turn into a value: an integer of more digits than
        # Python converts (a plain ValueError, without the position a JSONDecodeError has).
        raise ToolFailure("invalid_arguments", f"{tool.name}: arguments hold an integer too long to read "
                                               f"(over {sys.get_int_max_str_digits()} digits)") from None
    except RecursionError:
        raise ToolFailure("invalid_arguments", f"{tool.name}: arguments nested too deeply") from None
    errors = sorted(Draft202012Validator(tool.parameters).iter_errors(args), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "arguments"
        raise ToolFailure("invalid_arguments", f"{tool.name}: {where}: {errors[0].message}")
    return args


async def dispatch(tools: dict[str, Tool[S]], scope: S, name: str, raw: str, timeout_s: float) -> Any:
    tool = tools.get(name)
    if tool is None:
        raise ToolFailure("unknown_tool", f"no tool named {name!r} (offered: {', '.join(sorted(tools))})")
    args = validate(tool, raw)
    with tracing.tracer.start_as_current_span(f"tool {name}", attributes={"tool.name": name}):
        return await _run(tool, scope, name, args, timeout_s)


async def _run(tool: Tool[S], scope: S, name: str, args: dict[str, Any], timeout_s: float) -> Any:
    running = asyncio.ensure_future(tool.handler(scope, args))
    try:
        return await asyncio.wait_for(asyncio.shield(running) if tool.undo else running, timeout_s)
    except TimeoutError:
        late = f"{name} took longer than {timeout_s:g} s"
        if tool.undo is None:
            raise ToolFailure("tool_timeout", late) from None
        try:
            result = await running
        except Exception:
            raise ToolFailure("tool_timeout", f"{late} (and then failed: nothing to undo)") from None
        await tool.undo(scope, args, result)
        raise ToolFailure("tool_timeout", f"{late}; what it wrote meanwhile was undone") from None
    except ToolFailure:
        raise
    except Exception as e:  # a tool's own failure is the step's: its type and first line, details in the log
        log.warning("tool %s failed", name, exc_info=True)
        first = (str(e).splitlines() or [""])[0][:200]
        raise ToolFailure("tool_error", f"{name} failed: {type(e).__name__}: {first}") from None
