"""What every agent and tool of one run is handed: who, where, which run, and its limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecutionContext:
    """Frozen: no agent or tool can act for another user, thread or run than the one it was started for."""

    user_id: str
    thread_id: str
    run_id: str
    role: str  # the user's role from the token (tools check permissions against it)
    request_id: str | None = None
    trace_id: str | None = None

    def ids(self) -> dict[str, str | None]:
        return {"user_id": self.user_id, "thread_id": self.thread_id, "run_id": self.run_id,
                "request_id": self.request_id, "trace_id": self.trace_id}


@dataclass(frozen=True)
class Limits:
    step_timeout_s: float  # one model call
    tool_timeout_s: float  # one tool call
    run_timeout_s: float
    input_timeout_s: float  # waiting for the user's answer to the data helper's questions
    context_max_tokens: int  # thread history in the prompt
