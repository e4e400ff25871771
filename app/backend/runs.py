"""Agent runs: the request that starts one, its rows in PostgreSQL, and the runs this instance
executes.

A run is counted against the user's daily quota in the transaction that creates it. While it
executes, its instance renews a lease in Redis; a run whose lease lapsed belongs to an
instance that died, and any instance's sweeper fails it explicitly (`agent_error`, code
`interrupted`), so no run stays `running` forever. At startup an instance also fails the runs
it owned before it restarted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sqlalchemy import func, select, update

from app.agents import engine
from app.agents import metrics as agent_metrics
from app.agents.catalog import money
from app.agents.context import ExecutionContext, Limits
from app.agents.registry import Registry
from app.agents.scope import RunScope, Services, input_key, stop_key
from app.agents.usage import take_run
from app.agents.workers.probe import MAX_STEP_DELAY_MS, MAX_STEPS
from app.backend.leader import Leader
from app.backend.tokens import Principal
from app.common import threads
from app.common.settings import BackendSettings
from app.common.tables import RUN_ACTIVE, messages, run_steps, runs, usage_records
from app.common.text import StorableStr

log = logging.getLogger("app.backend.runs")
ACTIVE = RUN_ACTIVE


class RunRequest(BaseModel):
    """What starts a run, over REST or the WebSocket alike."""

    agent: str = Field("supervisor", min_length=1, max_length=64)
    input: StorableStr | None = Field(None, min_length=1, max_length=8000)
    # The probe's script.
    scenario: Literal["default", "tool_error", "long"] = "default"
    steps: int = Field(3, ge=1, le=MAX_STEPS)
    step_delay_ms: int | None = Field(None, ge=0, le=MAX_STEP_DELAY_MS)
    request_id: StorableStr | None = Field(None, min_length=1, max_length=128)
    trace_id: StorableStr | None = Field(None, min_length=1, max_length=128)
    # Tighter limits than the service's for this run (never looser).
    step_timeout_s: float | None = Field(None, gt=0)
    tool_timeout_s: float | None = Field(None, gt=0)
    run_timeout_s: float | None = Field(None, gt=0)
    context_max_tokens: int | None = Field(None, ge=10)

    def limits(self, s: BackendSettings) -> Limits:
        def tighter(asked: float | None, most: float) -> float:
            return most if asked is None else min(asked, most)
        return Limits(step_timeout_s=tighter(self.step_timeout_s, s.agent_step_timeout_s),
                      tool_timeout_s=tighter(self.tool_timeout_s, s.agent_step_timeout_s),
                      run_timeout_s=tighter(self.run_timeout_s, s.agent_run_timeout_s),
                      input_timeout_s=s.agent_input_timeout_s,
                      context_max_tokens=int(tighter(self.context_max_tokens, s.agent_context_max_tokens)))


class NothingToDo(ValueError):
    pass


def public(row: Any) -> dict[str, Any]:
    def ts(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {"id": str(row.id), "thread_id": str(row.thread_id), "owner_id": str(row.owner_id),
            "agent": row.agent, "status": row.status, "scenario": row.scenario, "instance_id": row.instance_id,
            "request_id": row.request_id, "trace_id": row.trace_id, "input": row.input,
            "error": row.error, "error_code": row.error_code, "pending_input": row.pending_input,
            "result": row.result, "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
            "cost_usd": money(row.cost_usd), "created_at": ts(row.created_at), "started_at": ts(row.started_at),
            "finished_at": ts(row.finished_at)}


def lease_key(run_id: str) -> str:
    return f"run:lease:{run_id}"


class Runner:
    """Starts runs as tasks of this process, keeps their leases, and fails runs whose instance died."""

    def __init__(self, settings: BackendSettings, agents: Registry, services: Services):
        self.settings, self.agents, self.services = settings, agents, services
        self.instance_id = settings.instance_id
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._background: list[asyncio.Task[None]] = []
        self.leader: Leader | None = None
        self._redis_failed_at = time.monotonic()

    # -- starting -------------------------------------------------------------------------------

    async def submit(self, who: Principal, thread_id: uuid.UUID, req: RunRequest,
                     before_start: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> dict[str, Any]:
        """Create the run (QuotaExceeded, NothingToDo) and start executing it here; `before_start`
        lets a socket subscribe and acknowledge before the first event can exist."""
        spec, db = self.agents[req.agent], self.services.db
        async with db.begin() as conn:
            message_id, task = None, req.input
            if not spec.own_steps:
                if req.input is not None:
                    saved = await threads.add_message(conn, who.sub, thread_id, "user", req.input)
                    message_id = saved["id"]
                else:
                    last = (await conn.execute(select(messages.c.id, messages.c.content).where(
                        messages.c.thread_id == thread_id, messages.c.role == "user")
                        .order_by(messages.c.created_at.desc(), messages.c.id.desc()).limit(1))).first()
                    if last is None:
                        raise NothingToDo(f"agent '{req.agent}' needs `input` or a user message in the thread")
                    message_id, task = str(last.id), last.content
            await take_run(conn, self.settings, who.sub)
            row = (await conn.execute(runs.insert().values(
                id=uuid.uuid4(), thread_id=thread_id, owner_id=uuid.UUID(who.sub), status="queued",
                scenario=req.scenario, agent=req.agent, input=task, instance_id=self.instance_id,
                request_id=req.request_id, trace_id=req.trace_id).returning(*runs.c))).one()
        run = public(row)
        await self._renew([run["id"]])
        ctx = ExecutionContext(user_id=who.sub, thread_id=str(thread_id), run_id=run["id"], role=who.role,
                               request_id=req.request_id, trace_id=req.trace_id)
        scope = RunScope(self.services, ctx, req.limits(self.settings), entry=req.agent)
        delay = self.settings.run_step_delay_ms if req.step_delay_ms is None else req.step_delay_ms
        data = ({"scenario": req.scenario, "steps": req.steps, "step_delay_ms": delay} if spec.own_steps
                else {"task": task, "message_id": message_id})
        if before_start is not None:
            await before_start(run)
        task_ = asyncio.create_task(engine.execute(scope, spec, data))
        self.tasks[run["id"]] = task_
        task_.add_done_callback(lambda _: self.tasks.pop(run["id"], None))
        return run

    # -- reading and steering -------------------------------------------------------------------

    async def owned(self, owner: str, run_id: uuid.UUID) -> dict[str, Any] | None:
        async with self.services.db.connect() as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == run_id,
                                                         runs.c.owner_id == uuid.UUID(owner)))).first()
        return public(row) if row else None

    async def steps(self, run_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self.services.db.connect() as conn:
            rows = (await conn.execute(select(run_steps).where(run_steps.c.run_id == run_id)
                                       .order_by(run_steps.c.seq))).all()
        return [{"seq": r.seq, "kind": r.kind, "name": r.name, "agent": r.agent, "status": r.status,
                 "event_id": r.event_id, "duration_ms": r.duration_ms, "model": r.model,
                 "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                 "cost_usd": money(r.cost_usd), "detail": r.detail,
                 "created_at": r.created_at.isoformat()} for r in rows]

    async def request_stop(self, run_id: str) -> None:
        await self.services.redis.set(stop_key(run_id), 1, ex=3600)

    async def stop_runs(self, run_ids: list[str]) -> None:
        """Stop runs for good (their owner is being deleted): the stop flag for whichever instance
        runs each, and this instance's own cancelled and awaited, so they are over on return."""
        async with self.services.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.set(stop_key(run_id), 1, ex=3600)
            await pipe.execute()
        mine = [task for run_id in run_ids if (task := self.tasks.get(run_id)) is not None]
        for task in mine:
            task.cancel()
        await asyncio.gather(*mine, return_exceptions=True)

    async def provide_input(self, run: dict[str, Any], answers: dict[str, str]) -> bool:
        """Hand the answers to whichever instance runs it; False if it was answered already."""
        ttl = int(self.settings.agent_input_timeout_s) + 60
        key = input_key(run["id"], run["pending_input"]["round"])
        return bool(await self.services.redis.set(key, json.dumps(answers), nx=True, ex=ttl))

    # -- leases, recovery -----------------------------------------------------------------------

    def start_background(self) -> None:
        # The sweeper runs on the leader only (app.backend.leader); leases are kept everywhere.
        self.leader = Leader(self.services.redis, self.instance_id, self.settings.leader_lease_s, self.sweep)
        self._background = [asyncio.create_task(self._keep_leases()), asyncio.create_task(self.leader.run())]

    async def recover(self) -> int:
        """Runs this instance owned before it (re)started cannot be going on: fail them now."""
        async with self.services.db.connect() as conn:
            ids = [str(r.id) for r in await conn.execute(select(runs.c.id).where(
                runs.c.status.in_(ACTIVE), runs.c.instance_id == self.instance_id))]
        for run_id in ids:
            await self._interrupt(run_id, f"the backend instance running it ({self.instance_id}) restarted")
        return len(ids)

    async def _renew(self, run_ids: list[str]) -> None:
        # In milliseconds: a lease of 1.5 s rounded to whole seconds would lapse later (or sooner) than it says.
        ttl_ms = max(1, round(self.settings.run_lease_s * 1000))
        async with self.services.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.set(lease_key(run_id), self.instance_id, px=ttl_ms)
            await pipe.execute()

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.settings.run_lease_s / 3)
            try:
                if self.tasks:
                    await self._renew(list(self.tasks))
            except (RedisError, OSError):
                self._redis_failed_at = time.monotonic()

    async def sweep(self) -> None:
        """Fail the runs whose lease lapsed (their instance died); the leader's job."""
        lease = self.settings.run_lease_s
        # Leases could not be renewed while Redis was away: judge none until it has been back a full lease.
        if time.monotonic() - self._redis_failed_at < lease:
            return
        try:
            async with self.services.db.connect() as conn:
                ids = [str(r.id) for r in await conn.execute(select(runs.c.id).where(
                    runs.c.status.in_(ACTIVE),
                    runs.c.created_at < datetime.now(timezone.utc) - timedelta(seconds=lease)))]
            for run_id in ids:
                if run_id not in self.tasks and not await self.services.redis.exists(lease_key(run_id)):
                    await self._interrupt(run_id, "the backend instance running it stopped (its lease lapsed)")
        except (RedisError, OSError):
            self._redis_failed_at = time.monotonic()
        except Exception:
            log.exception("sweeping abandoned runs failed")

    async def _interrupt(self, run_id: str, reason: str) -> None:
        """Fail an abandoned run with a last `agent_error` step, unless another instance got there first."""
        db, rid = self.services.db, uuid.UUID(run_id)
        async with db.begin() as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == rid, runs.c.status.in_(ACTIVE))
                                      .with_for_update(skip_locked=True))).first()
            if row is None:
                return
            seq = (await conn.execute(select(func.coalesce(func.max(run_steps.c.seq), 0))
                                      .where(run_steps.c.run_id == rid))).scalar_one() + 1
            await conn.execute(update(runs).where(runs.c.id == rid).values(
                status="failed", error=reason, error_code="interrupted", pending_input=None,
                finished_at=datetime.now(timezone.utc)))
            payload = {"agent": "supervisor", "code": "interrupted", "reason": reason, "step": seq,
                       "context": {"user_id": str(row.owner_id), "thread_id": str(row.thread_id), "run_id": run_id,
                                   "request_id": row.request_id, "trace_id": row.trace_id}}

            async def persist(event: dict[str, Any]) -> None:
                await conn.execute(run_steps.insert().values(
                    run_id=rid, seq=seq, kind="agent_error", name="supervisor", agent="supervisor", status="error",
                    event_id=event["event_id"], detail={k: payload[k] for k in ("code", "reason")}))

            await self.services.bus.emit(str(row.owner_id), str(row.thread_id), "agent_error", payload,
                                         run_id=run_id, persist=persist)
        agent_metrics.runs_finished.labels(row.agent, "failed").inc()
        log.warning("run %s failed: %s", run_id, reason)
        await self._usage_to_clickhouse(rid)

    async def _usage_to_clickhouse(self, run_id: uuid.UUID) -> None:
        """The usage a dead instance held for ClickHouse (it writes when a run ends), from PostgreSQL."""
        try:
            async with self.services.db.connect() as conn:
                rows = (await conn.execute(select(usage_records).where(usage_records.c.run_id == run_id)
                                           .order_by(usage_records.c.seq))).all()
            if not rows:
                return
            there = {r["seq"] for r in await self.services.clickhouse.query(
                "SELECT seq FROM usage_events WHERE run_id = {run:String}", {"run": str(run_id)})}
            await self.services.clickhouse.insert("usage_events", [
                [str(run_id), r.seq, str(r.user_id), r.agent, r.model, r.prompt_tokens, r.completion_tokens,
                 float(r.cost_usd), r.created_at] for r in rows if r.seq not in there], engine.USAGE_COLUMNS)
        except Exception as e:  # as in the engine: PostgreSQL has the usage, ClickHouse missing it is logged
            log.warning("run %s: usage not copied to ClickHouse: %s", run_id, e)

    async def stop_all(self) -> None:
        for task in [*self._background, *self.tasks.values()]:
            task.cancel()
        await asyncio.gather(*self._background, *self.tasks.values(), return_exceptions=True)
