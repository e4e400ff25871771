"""One run's execution scope: every step is persisted (with its tokens and cost) before its
event goes out, so the steps table and the event stream always agree.

Agents act only through this: `think` (a model call), `use_tool` (the dispatcher), `hand_off`
(run another agent with this one's output), `ask` (wait for the user's answer).

What a run needs from the process running it comes in through `Services`: the stores, the
model client, and two things this package defines and the backend provides: the `EventSink`
a step's event goes out through, and the agents a run may hand off to (the registry's: it
imports the agents, which import this).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agents import metrics
from app.agents.catalog import Catalog, money
from app.agents.context import ExecutionContext, Limits
from app.agents.llm import Completion, Endpoint, LlmClient, LlmError, ToolCall
from app.agents.tools import Tool, ToolFailure, dispatch
from app.common.clickhouse import ClickHouse
from app.common.tables import RUN_ACTIVE, run_steps, runs, usage_records
from app.common.text import storable

SUMMARY_CHARS = 300


class AgentFailure(Exception):
    """Ends the run `failed` with an `agent_error` naming the agent, a code and the reason."""

    def __init__(self, agent: str, code: str, reason: str):
        super().__init__(reason)
        self.agent, self.code, self.reason = agent, code, reason


class StopRequested(Exception):
    pass


class RunTakenOver(Exception):
    """The run is no longer this process's to write: it was ended elsewhere (the leader failed it
    when its lease lapsed while this process was starved or paused). Fencing: the step that finds
    it so writes nothing, and the run ends here without a word."""


class RunTimedOut(Exception):
    """The run's deadline passed: it ends `run_timeout` at its next checkpoint."""


def stop_key(run_id: str) -> str:
    return f"run:stop:{run_id}"


def input_key(run_id: str, round_: int) -> str:
    """Where the answer to one round of questions waits. Never deleted by its reader (it
    expires), so a second answer to the same round is refused, not taken and dropped."""
    return f"run:input:{run_id}:{round_}"


Persist = Callable[[dict[str, Any]], Awaitable[None]]
AgentRun = Callable[["RunScope", dict[str, Any]], Awaitable[dict[str, Any]]]


class EventSink(Protocol):
    """Where a run's events go out (the backend's EventBus: numbered per thread, kept for
    replay, delivered to the owner's sockets)."""

    async def emit(self, owner_id: str, thread_id: str, type_: str, payload: dict[str, Any],
                   run_id: str | None = None, persist: Persist | None = None) -> dict[str, Any]:
        """Number the event, run `persist` with it before anyone can receive it, then deliver it."""


class EndpointSource(Protocol):
    async def endpoint_for(self, user_id: str) -> Endpoint | None:
        """The provider the user's model calls go to, if they connected their own."""


@dataclass
class Services:
    db: AsyncEngine
    redis: Redis
    bus: EventSink
    llm: LlmClient
    catalog: Catalog
    clickhouse: ClickHouse
    agents: Mapping[str, AgentRun]  # by name: what `hand_off` runs
    # Users' own model providers (the backend's provider connections); none: the platform's for all.
    endpoints: EndpointSource | None = None


@dataclass
class RunScope:
    services: Services
    ctx: ExecutionContext
    limits: Limits
    entry: str = "supervisor"  # the agent the run was started with
    seq: int = 0
    finished: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    usage_events: list[list[Any]] = field(default_factory=list)  # for ClickHouse, written when the run ends
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    deadline: float | None = None  # the event loop's clock when the run timeout is up

    # -- steps -----------------------------------------------------------------------------------

    async def step(self, kind: str, agent: str, name: str, payload: dict[str, Any], *, status: str = "ok",
                   duration_ms: float | None = None, model: str | None = None, tokens: tuple[int, int] = (0, 0),
                   cost: Decimal = Decimal(0), final: dict[str, Any] | None = None) -> None:
        """Persist the step (and, for the last one, the run's outcome), then emit its event.
        Model and tool text is made storable first: a NUL from a model must not lose the step."""
        self.seq += 1
        seq = self.seq
        s = self.services
        run_id = uuid.UUID(self.ctx.run_id)
        payload = storable(payload)
        if final is not None:
            final = storable(final)
        totals = {"prompt_tokens": self.prompt_tokens + tokens[0],
                  "completion_tokens": self.completion_tokens + tokens[1], "cost_usd": self.cost_usd + cost}

        async def persist(event: dict[str, Any]) -> None:
            async with s.db.begin() as conn:
                # The row lock orders this step with the sweeper's interrupt of the same run.
                now = (await conn.execute(select(runs.c.status).where(runs.c.id == run_id).with_for_update())).scalar()
                if now not in RUN_ACTIVE:
                    raise RunTakenOver(f"run {run_id} is {now} already: step {seq} ({kind}) not written")
                await conn.execute(run_steps.insert().values(
                    run_id=run_id, seq=seq, kind=kind, name=name, status=status, event_id=event["event_id"],
                    duration_ms=duration_ms, detail=payload, agent=agent, model=model, prompt_tokens=tokens[0],
                    completion_tokens=tokens[1], cost_usd=cost))
                if model is not None:
                    await conn.execute(usage_records.insert().values(
                        user_id=uuid.UUID(self.ctx.user_id), run_id=run_id, seq=seq, agent=agent, model=model,
                        prompt_tokens=tokens[0], completion_tokens=tokens[1], cost_usd=cost))
                if final is not None or model is not None:
                    extra = ({**final, "finished_at": datetime.now(timezone.utc), "pending_input": None}
                             if final is not None else {})
                    await conn.execute(update(runs).where(runs.c.id == run_id).values(**totals, **extra))

        await s.bus.emit(self.ctx.user_id, self.ctx.thread_id, kind,
                         {**payload, "agent": agent, "step": seq, "context": self.ctx.ids()},
                         run_id=self.ctx.run_id, persist=persist)
        if model is not None:  # counted once it is stored: ClickHouse never gets usage PostgreSQL lacks
            self.prompt_tokens, self.completion_tokens, self.cost_usd = (
                totals["prompt_tokens"], totals["completion_tokens"], totals["cost_usd"])
            self.usage_events.append([self.ctx.run_id, seq, self.ctx.user_id, agent, model, tokens[0], tokens[1],
                                      float(cost), datetime.now(timezone.utc)])
            metrics.llm_tokens.labels(model, "prompt").inc(tokens[0])
            metrics.llm_tokens.labels(model, "completion").inc(tokens[1])
            metrics.llm_cost.labels(model).inc(float(cost))
        if final is not None:
            self.finished = True
            metrics.runs_finished.labels(self.entry, final["status"]).inc()

    async def checkpoint(self) -> None:
        """Between steps: a passed deadline or a stop request (any instance may have set it) ends
        the run here. The run timeout also cancels whatever the run awaits when it is up, but a
        call that completes in that same moment swallows the cancellation (`asyncio.wait_for`
        before Python 3.12) and the run would go on as if it had time left."""
        if self.deadline is not None and asyncio.get_running_loop().time() >= self.deadline:
            raise RunTimedOut
        try:
            stop = await self.services.redis.exists(stop_key(self.ctx.run_id))
        except (RedisError, OSError):
            stop = False  # Redis is away: the run goes on (its events are delivered locally)
        if stop:
            raise StopRequested

    # -- what agents do ----------------------------------------------------------------------------

    async def think(self, agent: str, messages: list[dict[str, Any]], *,
                    tools: list[Tool[RunScope]] | None = None, json_output: bool = False, stream: bool = False,
                    note: dict[str, Any] | None = None) -> Completion:
        """One model call: streamed pieces go out as partial `agent_thinking` events, then one
        `agent_thinking` step carrying the model, usage and cost."""
        await self.checkpoint()
        on_delta: Callable[[str], Awaitable[None]] | None = None
        if stream:
            async def on_delta(piece: str) -> None:
                await self.step("agent_thinking", agent, "stream", {"delta": piece, "partial": True})

        # Looked up at every call: a connection deleted mid-run is not used for the next call.
        endpoint = await self.services.endpoints.endpoint_for(self.ctx.user_id) if self.services.endpoints else None
        t0 = time.perf_counter()
        try:
            done = await asyncio.wait_for(
                self.services.llm.complete(messages, user=self.ctx.user_id, tools=[t.spec() for t in tools or []],
                                           json_output=json_output, on_delta=on_delta, endpoint=endpoint),
                self.limits.step_timeout_s)
        except TimeoutError:
            raise AgentFailure(agent, "step_timeout", f"the model call took longer than "
                                                      f"{self.limits.step_timeout_s:g} s") from None
        except LlmError as e:
            metrics.llm_calls.labels(e.code).inc()
            raise AgentFailure(agent, e.code, e.reason) from None
        took = round((time.perf_counter() - t0) * 1000, 2)
        metrics.llm_calls.labels("fallback" if done.fallback_used else "ok").inc()
        price, _ = await self.services.catalog.get(done.model)
        cost = price.cost(done.prompt_tokens, done.completion_tokens) if price else Decimal(0)
        await self.step("agent_thinking", agent, "model_call", {
            "model": done.model, "text": (done.content or "")[:SUMMARY_CHARS],
            "tool_calls": [c.name for c in done.tool_calls], "partial": False,
            "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens},
            "cost_usd": money(cost), "priced": price is not None, "fallback_used": done.fallback_used,
            "failed_attempts": done.attempts, **(note or {})},
            duration_ms=took, model=done.model, tokens=(done.prompt_tokens, done.completion_tokens), cost=cost)
        metrics.agent_step_seconds.labels(agent, "model_call").observe(took / 1000)
        return done

    async def use_tool(self, agent: str, tools: list[Tool[RunScope]], call: ToolCall) -> Any:
        """Run the model's tool call through the dispatcher; a bad call fails the step and the agent."""
        await self.checkpoint()
        head = {"tool": call.name, "call_id": call.id, "args_summary": call.arguments[:200]}
        await self.step("tool_executing", agent, call.name, head, status="running")
        t0 = time.perf_counter()
        try:
            result = await dispatch({t.name: t for t in tools}, self, call.name, call.arguments,
                                    self.limits.tool_timeout_s)
        except ToolFailure as e:
            took = round((time.perf_counter() - t0) * 1000, 2)
            await self.step("tool_completed", agent, call.name, {**head, "status": "error", "code": e.code,
                                                                 "error": e.reason, "duration_ms": took},
                            status="error", duration_ms=took)
            raise AgentFailure(agent, e.code, e.reason) from None
        took = round((time.perf_counter() - t0) * 1000, 2)
        await self.step("tool_completed", agent, call.name, {
            **head, "status": "ok", "duration_ms": took, "result": result,
            "result_summary": json.dumps(result, default=str)[:SUMMARY_CHARS]}, duration_ms=took)
        metrics.agent_step_seconds.labels(agent, "tool_call").observe(took / 1000)
        return result

    async def hand_off(self, to: str, data: dict[str, Any], source: str | None) -> dict[str, Any]:
        """Run agent `to` with `data`; its start and end are steps, the handoff is recorded."""
        await self.checkpoint()
        self.handoffs.append({"from": source, "to": to, "keys": sorted(data)})
        await self.step("agent_started", to, to, {"handoff": {"from": source, "input": data}})
        t0 = time.perf_counter()
        output = await self.services.agents[to](self, data)
        took = round((time.perf_counter() - t0) * 1000, 2)
        await self.step("agent_completed", to, to, {"output": output, "duration_ms": took}, duration_ms=took)
        metrics.agent_step_seconds.labels(to, "agent").observe(took / 1000)
        return output

    async def ask(self, agent: str, questions: list[dict[str, str]]) -> dict[str, str]:
        """Wait for the user's answers (`POST /api/runs/{id}/input`, to any instance)."""
        s, run_id = self.services, uuid.UUID(self.ctx.run_id)
        round_ = self.seq + 1  # the input_required step's seq names this round of questions
        async with s.db.begin() as conn:
            await conn.execute(update(runs).where(runs.c.id == run_id).values(
                status="awaiting_input", pending_input={"agent": agent, "questions": questions, "round": round_}))
        await self.step("input_required", agent, agent, {"questions": questions})
        deadline = time.monotonic() + self.limits.input_timeout_s
        while time.monotonic() < deadline:
            await self.checkpoint()
            try:
                raw = await s.redis.get(input_key(self.ctx.run_id, round_))
            except (RedisError, OSError):
                raw = None
            if raw:
                answers = json.loads(raw)
                async with s.db.begin() as conn:
                    await conn.execute(update(runs).where(runs.c.id == run_id)
                                       .values(status="running", pending_input=None))
                await self.step("input_received", agent, agent, {"answers": answers})
                return answers
            await asyncio.sleep(0.05)
        raise AgentFailure(agent, "input_timeout", f"no answer to {len(questions)} question(s) within "
                                                   f"{self.limits.input_timeout_s:g} s")
