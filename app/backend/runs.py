"""Agent runs: rows in PostgreSQL, and the built-in pipeline that executes them.

Until the agents land, a run executes a short deterministic pipeline that emits the real
event sequence through the real gateway: `agent_started`, `agent_thinking`,
`tool_executing` / `tool_completed` (paired by `call_id`), `agent_completed`,
`final_report`; scenario `tool_error` makes the tool fail (`agent_error`, run failed),
`long` thinks for `steps` steps (reconnect tests), and a stop request ends the run
`cancelled` with `agent_stopped`. Every step is persisted (with its event id) before the
next one starts. A stop request is a Redis key, so any instance can stop any run.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.backend import metrics
from app.backend.events import EventBus
from app.backend.models import run_steps, runs

SCENARIOS = ("default", "tool_error", "long")
MAX_STEPS = 200
MAX_STEP_DELAY_MS = 2000


def public(row: Any) -> dict[str, Any]:
    def ts(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {"id": str(row.id), "thread_id": str(row.thread_id), "owner_id": str(row.owner_id),
            "status": row.status, "scenario": row.scenario, "instance_id": row.instance_id,
            "request_id": row.request_id, "trace_id": row.trace_id, "error": row.error, "result": row.result,
            "created_at": ts(row.created_at), "started_at": ts(row.started_at), "finished_at": ts(row.finished_at)}


class StopRequested(Exception):
    pass


def stop_key(run_id: str) -> str:
    return f"run:stop:{run_id}"


class Runner:
    """Starts runs as tasks of this process and keeps them until they end."""

    def __init__(self, db: AsyncEngine, redis: Redis, bus: EventBus, instance_id: str, step_delay_ms: int):
        self.db, self.redis, self.bus = db, redis, bus
        self.instance_id, self.step_delay_ms = instance_id, step_delay_ms
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def create(self, owner: str, thread_id: uuid.UUID, scenario: str, request_id: str | None,
                     trace_id: str | None) -> dict[str, Any]:
        async with self.db.begin() as conn:
            row = (await conn.execute(runs.insert().values(
                id=uuid.uuid4(), thread_id=thread_id, owner_id=uuid.UUID(owner), status="queued", scenario=scenario,
                instance_id=self.instance_id, request_id=request_id, trace_id=trace_id).returning(*runs.c))).one()
        return public(row)

    def start(self, run: dict[str, Any], steps: int, step_delay_ms: int | None) -> None:
        delay = self.step_delay_ms if step_delay_ms is None else step_delay_ms
        task = asyncio.create_task(self._execute(run, steps, delay / 1000))
        self.tasks[run["id"]] = task
        task.add_done_callback(lambda _: self.tasks.pop(run["id"], None))

    async def request_stop(self, run_id: str) -> None:
        await self.redis.set(stop_key(run_id), 1, ex=3600)

    async def owned(self, owner: str, run_id: uuid.UUID) -> dict[str, Any] | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == run_id,
                                                         runs.c.owner_id == uuid.UUID(owner)))).first()
        return public(row) if row else None

    async def steps(self, run_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = (await conn.execute(select(run_steps).where(run_steps.c.run_id == run_id)
                                       .order_by(run_steps.c.seq))).all()
        return [{"seq": r.seq, "kind": r.kind, "name": r.name, "status": r.status, "event_id": r.event_id,
                 "duration_ms": r.duration_ms, "detail": r.detail} for r in rows]

    async def stop_all(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    # -- the pipeline ---------------------------------------------------------------------------

    async def _execute(self, run: dict[str, Any], steps: int, delay_s: float) -> None:
        run_id, thread_id, owner = run["id"], run["thread_id"], run["owner_id"]
        context = {"request_id": run["request_id"], "trace_id": run["trace_id"], "user_id": owner,
                   "thread_id": thread_id, "run_id": run_id}
        seq = 0
        finished = False

        async def step(kind: str, name: str, payload: dict[str, Any], status: str = "ok",
                       duration_ms: float | None = None, final: dict[str, Any] | None = None) -> None:
            """Persist the step (and, for the last one, the run's outcome) before its event goes out."""
            nonlocal seq, finished
            seq += 1

            async def persist(event: dict[str, Any]) -> None:
                async with self.db.begin() as conn:
                    await conn.execute(run_steps.insert().values(
                        run_id=uuid.UUID(run_id), seq=seq, kind=kind, name=name, status=status,
                        event_id=event["event_id"], duration_ms=duration_ms, detail=payload))
                    if final is not None:
                        await conn.execute(update(runs).where(runs.c.id == uuid.UUID(run_id))
                                           .values(**final, finished_at=datetime.now(timezone.utc)))

            await self.bus.emit(owner, thread_id, kind, {**payload, "step": seq, "context": context},
                                run_id=run_id, persist=persist)
            if final is not None:
                finished = True
                metrics.runs_finished.labels(final["status"]).inc()

        async def pause() -> None:
            await asyncio.sleep(delay_s)
            try:
                stop = await self.redis.exists(stop_key(run_id))
            except (RedisError, OSError):
                stop = False  # Redis is away: the run goes on (its events are delivered locally)
            if stop:
                raise StopRequested

        try:
            await self._set(run_id, status="running", started_at=datetime.now(timezone.utc))
            await step("agent_started", "supervisor", {"agent": "supervisor", "scenario": run["scenario"]})
            thoughts = steps if run["scenario"] == "long" else 1
            for i in range(thoughts):
                await pause()
                await step("agent_thinking", "triage", {"agent": "triage", "text": f"thinking {i + 1}/{thoughts}"})
            await pause()
            call_id = f"call_{uuid.uuid4().hex[:12]}"
            tool = {"tool": "workload_query", "call_id": call_id,
                    "args_summary": "events of the last 7 days grouped by model"}
            await step("tool_executing", "workload_query", tool, status="running")
            t0 = time.perf_counter()
            await pause()
            took = round((time.perf_counter() - t0) * 1000, 2)
            if run["scenario"] == "tool_error":
                reason = "workload_query failed: upstream timed out"
                await step("tool_completed", "workload_query", {**tool, "status": "error", "duration_ms": took,
                                                                "error": reason}, status="error", duration_ms=took)
                await step("agent_error", "supervisor", {"agent": "supervisor", "code": "tool_failed",
                                                         "reason": reason}, status="error",
                           final={"status": "failed", "error": reason})
                return
            await step("tool_completed", "workload_query", {**tool, "status": "ok", "duration_ms": took,
                                                            "result_summary": "3 models, 1204 requests"},
                       duration_ms=took)
            await pause()
            await step("agent_completed", "supervisor", {"agent": "supervisor"})
            result = {"summary": "Switching 2 of 3 models saves 31% of spend.", "savings_pct": 31}
            await step("final_report", "reporting", {"agent": "reporting", "report": result},
                       final={"status": "completed", "result": result})
        except StopRequested:
            reason = "stopped on request"
            await step("agent_stopped", "supervisor", {"agent": "supervisor", "reason": reason}, status="cancelled",
                       final={"status": "cancelled", "error": reason})
        except asyncio.CancelledError:
            await self._finish(run_id, finished, "the backend instance running it shut down")
            raise
        except Exception as e:  # the run fails; the process and its other runs carry on
            logging.getLogger("app.backend.runs").exception("run %s failed", run_id)
            await self._finish(run_id, finished, f"{type(e).__name__}: {e}")
        finally:
            try:
                await self.redis.delete(stop_key(run_id))
            except (RedisError, OSError):
                pass  # the stop key expires on its own

    async def _finish(self, run_id: str, finished: bool, error: str) -> None:
        """A run that ended without its last step: failed, saying why."""
        if not finished:
            await self._set(run_id, status="failed", error=error, finished_at=datetime.now(timezone.utc))
            metrics.runs_finished.labels("failed").inc()

    async def _set(self, run_id: str, **values: Any) -> None:
        async with self.db.begin() as conn:
            await conn.execute(update(runs).where(runs.c.id == uuid.UUID(run_id)).values(**values))
