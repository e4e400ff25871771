"""`probe`: a scripted run for the gateway checks, no model involved. It emits the real event
sequence with controllable timing: `agent_started`, `agent_thinking` x steps (scenario
`long`) or once, `tool_executing` / `tool_completed`, `agent_completed`, `final_report`;
scenario `tool_error` fails its tool and the run. A test agent: a backend lists it only with
`BACKEND_TEST_AGENTS` on (`app.agents.registry`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from app.agents.scope import AgentFailure, RunScope

SCENARIOS = ("default", "tool_error", "long")
MAX_STEPS = 200
MAX_STEP_DELAY_MS = 2000


async def run(scope: RunScope, inp: dict[str, Any]) -> dict[str, Any]:
    delay_s = inp["step_delay_ms"] / 1000
    scenario = inp["scenario"]

    async def pause() -> None:
        await asyncio.sleep(delay_s)
        await scope.checkpoint()

    await scope.step("agent_started", "supervisor", "supervisor", {"scenario": scenario})
    thoughts = inp["steps"] if scenario == "long" else 1
    for i in range(thoughts):
        await pause()
        await scope.step("agent_thinking", "triage", "triage", {"text": f"thinking {i + 1}/{thoughts}"})
    await pause()
    tool = {"tool": "workload_query", "call_id": f"call_{uuid.uuid4().hex[:12]}",
            "args_summary": "events of the last 7 days grouped by model"}
    await scope.step("tool_executing", "supervisor", "workload_query", tool, status="running")
    t0 = time.perf_counter()
    await pause()
    took = round((time.perf_counter() - t0) * 1000, 2)
    if scenario == "tool_error":
        reason = "workload_query failed: upstream timed out"
        await scope.step("tool_completed", "supervisor", "workload_query",
                         {**tool, "status": "error", "duration_ms": took, "error": reason}, status="error",
                         duration_ms=took)
        raise AgentFailure("supervisor", "tool_failed", reason)
    await scope.step("tool_completed", "supervisor", "workload_query",
                     {**tool, "status": "ok", "duration_ms": took, "result_summary": "3 models, 1204 requests"},
                     duration_ms=took)
    await pause()
    await scope.step("agent_completed", "supervisor", "supervisor", {})
    return {"summary": "Switching 2 of 3 models saves 31% of spend.", "savings_pct": 31}
