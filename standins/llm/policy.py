"""What the "model" answers: a pure function of the request, so every answer is reproducible.

`role` is the agent role named in the first system message (`agent: triage`), else
"assistant"; `task` is the last user message. In order:

1. tools offered (and tool_choice not "none") and no tool result after the last user
   message: call one tool (the one tool_choice names, else the first whose name is a word of
   the task, else the first), its arguments filled from the task and the tool's JSON schema;
2. tool results after the last user message: a final text naming what each tool returned;
3. a JSON response_format: the role's JSON (triage's verdict, data_helper's questions, or a
   summary);
4. plain text: the role and the task.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from standins.llm.schemas import ChatRequest, Message, NamedToolChoice, Tool
from standins.llm.tokens import content_text

_ROLE = re.compile(r"agent:\s*([a-z_]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_MISSING_LINE = re.compile(r"^\s*missing:\s*(.*)$", re.IGNORECASE | re.MULTILINE)

TOOL_RESULT_MAX = 400
SUMMARY_MAX = 200
ECHO_MAX = 300

CATEGORIES = [
    (re.compile(r"\b(cost|spend|price|cheaper|savings)", re.IGNORECASE), "cost_optimization"),
    (re.compile(r"\b(latency|slow|speed|throughput)", re.IGNORECASE), "performance"),
    (re.compile(r"\b(quality|accuracy|eval)", re.IGNORECASE), "quality"),
]
FACTS = [
    ("workload", re.compile(r"workload|usage|requests|traffic|events", re.IGNORECASE)),
    ("timeframe", re.compile(r"last \d+ days|days:\s*\d+|this (week|month)|yesterday", re.IGNORECASE)),
]
SUFFICIENCY = {0: ("sufficient", 0.9), 1: ("partial", 0.6), 2: ("insufficient", 0.3)}
QUESTIONS = {
    "workload": "Which workload or service should I analyse?",
    "timeframe": "Which time window should I analyse (for example, the last 7 days)?",
}


@dataclass(frozen=True)
class Answer:
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def logged(self) -> dict[str, Any]:
        return {"tool_calls": self.tool_calls} if self.tool_calls else {"content": self.content}


def tool_call(name: str, arguments: str) -> dict[str, Any]:
    # Ids only need to be unique, like a provider's; they are not part of the answer's content.
    return {"id": f"call_{secrets.token_hex(12)}", "type": "function",
            "function": {"name": name, "arguments": arguments}}


def role_of(messages: list[Message]) -> str:
    system = next((m for m in messages if m.role == "system"), None)
    found = _ROLE.search(content_text(system.content)) if system else None
    return found.group(1).lower() if found else "assistant"


def answer(req: ChatRequest) -> Answer:
    role = role_of(req.messages)
    last_user = max((i for i, m in enumerate(req.messages) if m.role == "user"), default=-1)
    task = content_text(req.messages[last_user].content) if last_user >= 0 else ""
    results = [m for m in req.messages[last_user + 1:] if m.role == "tool"]
    if req.tools and req.tool_choice != "none" and not results:
        tool = _pick_tool(req.tools, req.tool_choice, task)
        args = arguments(tool.function.parameters, task)
        return Answer(tool_calls=[tool_call(tool.function.name, json.dumps(args))])
    if results:
        return Answer(content=f"{role}: " + "; ".join(
            f"{_tool_name(req.messages, m)} returned {_compact(content_text(m.content))}" for m in results))
    if req.response_format and req.response_format.type in ("json_object", "json_schema"):
        return Answer(content=json.dumps(_role_json(role, task, req.messages)))
    return Answer(content=f"{role}: " + " ".join(task.split())[:ECHO_MAX])


def _word(word: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def _pick_tool(tools: list[Tool], choice: Any, task: str) -> Tool:
    if isinstance(choice, NamedToolChoice):
        return next(t for t in tools if t.function.name == choice.name)
    return next((t for t in tools if _word(t.function.name, task)), tools[0])


def arguments(schema: dict[str, Any], task: str) -> dict[str, Any]:
    """Each property from `p: value` / `p=value` in the task (up to the end of the line or `;`,
    JSON if it parses, coerced to the schema's type), else its default. A required one without
    either gets: a number, the task's first number; a string enum, the first value named in the
    task, else the first value; a string "", an array [], an object {}. Others are left out."""
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    out: dict[str, Any] = {}
    for name, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        written = re.search(rf"(?<!\w){re.escape(name)}\s*[:=][ \t]*([^;\n]*)", task, re.IGNORECASE)
        if written and written.group(1).strip():
            out[name] = _coerce(written.group(1).strip(), spec.get("type"))
        elif "default" in spec:
            out[name] = spec["default"]
        elif name in required:
            out[name] = _guess(spec, task)
    return out


def _coerce(raw: str, kind: Any) -> Any:
    if kind == "string":
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    try:
        if kind == "integer" and not isinstance(value, bool):
            return int(float(value))
        if kind == "number" and not isinstance(value, (bool, int, float)):
            return float(value)
    except (TypeError, ValueError):
        return value  # not a number after all: the tool's own validation will say so
    if kind == "boolean" and isinstance(value, str):
        return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
            value.lower(), value)
    return value


def _guess(spec: dict[str, Any], task: str) -> Any:
    kind = spec.get("type")
    if kind in ("integer", "number"):
        found = _NUMBER.search(task)
        number = float(found.group()) if found else 0
        return int(number) if kind == "integer" else number
    if kind == "string" and isinstance(spec.get("enum"), list) and spec["enum"]:
        return next((v for v in spec["enum"] if _word(str(v), task)), spec["enum"][0])
    return {"string": "", "array": [], "object": {}, "boolean": False}.get(kind)


def _tool_name(messages: list[Message], result: Message) -> str:
    for m in messages:
        for call in m.tool_calls or []:
            if call.id == result.tool_call_id:
                return call.function.name
    return result.name or "unknown_tool"


def _compact(text: str) -> str:
    try:
        text = json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        pass  # not JSON: reported as it was given
    return text[:TOOL_RESULT_MAX]


def _role_json(role: str, task: str, messages: list[Message]) -> dict[str, Any]:
    if role == "triage":
        category = next((name for pattern, name in CATEGORIES if pattern.search(task)), "general")
        missing = [fact for fact, pattern in FACTS if not pattern.search(task)]
        sufficiency, confidence = SUFFICIENCY[len(missing)]
        return {"category": category, "sufficiency": sufficiency, "missing": missing, "confidence": confidence}
    if role == "data_helper":
        # The line may be in the task or in the instructions; the task's wins.
        texts = [task, *(content_text(m.content) for m in messages)]
        line = next((found for t in texts if (found := _MISSING_LINE.search(t))), None)
        fields = [f.strip() for f in line.group(1).split(",") if f.strip()] if line else []
        return {"questions": [{"field": f, "question": QUESTIONS.get(f, f"Please provide {f}.")} for f in fields]}
    return {"role": role, "summary": task[:SUMMARY_MAX]}
