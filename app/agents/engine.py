"""A run from start to outcome. The outcome is always a step: `final_report` (completed),
`agent_error` with a code (failed: the agent's failure, `step_timeout`, `run_timeout`, ...)
or `agent_stopped` (cancelled). The run's usage is written to ClickHouse before that last
step, so a client that sees the outcome finds the usage there too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import update

from app.agents import metrics
from app.agents.registry import Agent
from app.agents.scope import AgentFailure, RunScope, RunTakenOver, RunTimedOut, StopRequested
from app.common import threads
from app.common.tables import runs

log = logging.getLogger("app.agents")

USAGE_COLUMNS = ["run_id", "seq", "user_id", "agent", "model", "prompt_tokens", "completion_tokens", "cost_usd", "ts"]


async def execute(scope: RunScope, spec: Agent, data: dict[str, Any]) -> None:
    try:
        await _execute(scope, spec, data)
    except RunTakenOver as e:  # ended elsewhere, whichever step found it (its last one is written there)
        metrics.runs_taken_over.inc()
        log.warning("run %s: %s", scope.ctx.run_id, e)


async def _execute(scope: RunScope, spec: Agent, data: dict[str, Any]) -> None:
    run_id = uuid.UUID(scope.ctx.run_id)
    agent = spec.name
    try:
        await _set(scope, run_id, status="running", started_at=datetime.now(timezone.utc))
        scope.deadline = asyncio.get_running_loop().time() + scope.limits.run_timeout_s
        async with asyncio.timeout_at(scope.deadline):
            result = await (spec.run(scope, data) if spec.own_steps else scope.hand_off(agent, data, None))
            await scope.checkpoint()
        result = {**result, "handoffs": scope.handoffs} if scope.handoffs else result
        if not spec.own_steps:
            await _reply(scope, result)
        await _flush_usage(scope)
        # The supervisor's report is the reporting agent's; an agent run on its own reports itself.
        reporter = agent if not spec.own_steps and agent != "supervisor" else "reporting"
        await scope.step("final_report", reporter, reporter, {"report": result},
                         final={"status": "completed", "result": result})
    except StopRequested:
        reason = "stopped on request"
        await _flush_usage(scope)
        await scope.step("agent_stopped", "supervisor", "supervisor", {"reason": reason}, status="cancelled",
                         final={"status": "cancelled", "error": reason, "error_code": "stopped"})
    except AgentFailure as e:
        await _flush_usage(scope)
        await scope.step("agent_error", e.agent, e.agent, {"code": e.code, "reason": e.reason}, status="error",
                         final={"status": "failed", "error": e.reason, "error_code": e.code})
    except (TimeoutError, RunTimedOut):
        reason = f"the run took longer than {scope.limits.run_timeout_s:g} s"
        await _flush_usage(scope)
        await scope.step("agent_error", "supervisor", "supervisor", {"code": "run_timeout", "reason": reason},
                         status="error", final={"status": "failed", "error": reason, "error_code": "run_timeout"})
    except RunTakenOver:  # not the run's failure: execute() ends it without a word
        raise
    except asyncio.CancelledError:
        await _abandon(scope, run_id, "interrupted", "the backend instance running it shut down")
        raise
    except Exception as e:  # the run fails; the process and its other runs carry on
        log.exception("run %s failed", run_id)
        await _abandon(scope, run_id, "internal_error", f"{type(e).__name__}: {e}")
    finally:
        await _flush_usage(scope)  # a run cut short still reports what it used


async def _flush_usage(scope: RunScope) -> None:
    rows, scope.usage_events = scope.usage_events, []
    try:
        await scope.services.clickhouse.insert("usage_events", rows, USAGE_COLUMNS)
    except Exception as e:  # PostgreSQL holds the same usage; ClickHouse missing it is logged, not fatal
        log.warning("run %s: %d usage events not written to ClickHouse: %s", scope.ctx.run_id, len(rows), e)


async def _reply(scope: RunScope, result: dict[str, Any]) -> None:
    """The report becomes the assistant's message in the thread (the next run's history)."""
    text = result.get("report") or result.get("summary")
    if text:
        async with scope.services.db.begin() as conn:
            await threads.add_message(conn, scope.ctx.user_id, uuid.UUID(scope.ctx.thread_id), "assistant", text)


async def _abandon(scope: RunScope, run_id: uuid.UUID, code: str, reason: str) -> None:
    """A run that ended without its last step: failed, saying why (no event: the loop may be going)."""
    if not scope.finished:
        await _set(scope, run_id, status="failed", error=reason, error_code=code, pending_input=None,
                   finished_at=datetime.now(timezone.utc))
        metrics.runs_finished.labels(scope.entry, "failed").inc()


async def _set(scope: RunScope, run_id: uuid.UUID, **values: Any) -> None:
    async with scope.services.db.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
