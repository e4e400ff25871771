"""Steps of 03_agents: arrange a user with a thread, workload rows and corpus entries; start a
run and read back what the platform did (its steps, events, model calls, usage); recompute
what a run must have computed.

Runs are read as the API returns them (dicts), steps as `GET /api/runs/{id}/steps` lists them.
Every wait is a `poll` with a deadline; ClickHouse rows a step writes belong to the check's user
and go with `agent_user`'s cleanup.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from workbook.checks import using
from workbook.clients import clickhouse
from workbook.clients.platform import (AsyncAuth, AsyncBackend, AsyncLlm, User, metric, new_password, redact,
                                       unique_email)
from workbook.clients.platform.ws import Socket
from workbook.clients.scope import Check
from workbook.params import Env
from workbook.polling import poll

Run = dict[str, Any]
Step = dict[str, Any]
Event = dict[str, Any]
Call = dict[str, Any]  # one entry of the model provider's request log

# -- requests and what the platform is built to do with them ---------------------------------------

# The stand-in's policy (app/llm_standin/policy.py) finds both facts in the first, no time
# window in the second, neither in the third: the three branches of the supervisor.
COST_REQUEST = "How can I cut the cost of my workload requests over the last 7 days?"
SLOW_REQUEST = "Why is my workload so slow?"
VAGUE_REQUEST = "Can you help me?"
# The serial lock (`check(..., serial=)`) of checks that make a few of the platform's model calls
# fail: each keeps the model breaker's failures in a row under its threshold, two at once (two runs
# side by side) would open it under every other run.
MODEL_FAILURES = "model_failures"

RUN_ENDED = ("completed", "failed", "cancelled")
OUTCOMES = ("final_report", "agent_error", "agent_stopped")
STEP_KINDS = frozenset({"agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed",
                        "input_required", "input_received", "final_report", "agent_error", "agent_stopped"})
SUB_AGENTS = frozenset({"triage", "data", "optimization", "actions", "reporting", "data_helper"})
ENTRY_AGENTS = frozenset({"supervisor", "corpus_admin", "supply_researcher"})
BRANCHES = {"sufficient": ["triage", "data", "optimization", "actions", "reporting"],
            "partial": ["triage", "data_helper", "data", "reporting"],
            "insufficient": ["triage", "data_helper", "reporting"]}
QUESTION_FIELDS = frozenset({"workload", "timeframe"})
# The steps that measure something: completed model calls, tool calls, agents.
TIMED_KINDS = ("agent_thinking", "tool_completed", "agent_completed")

# A per-run tool limit a normal workload query meets with room to spare, and a workload of
# that many models, which the data agent's tool cannot total within it (several times over).
SLOW_TOOL_LIMIT_S = 0.1
SLOW_WORKLOAD_MODELS = 400_000

# ClickHouse tables the agents read or write, and the column naming whose row it is.
CORPUS_COLUMNS = ["entry_id", "owner_id", "title", "content", "tags", "created_at"]
WORKLOAD_COLUMNS = ["user_id", "ts", "workload", "model", "requests", "prompt_tokens", "completion_tokens",
                    "latency_ms"]


# -- ClickHouse: the check's own rows ------------------------------------------------------------

def _clickhouse(env: Env) -> Client:
    # Without a server session: a client per check would otherwise leave one session per check
    # open on the server until it idles out (a minute), each holding a connection of its own.
    return clickhouse.client(env, autogenerate_session_id=False)


def clickhouse_for(ck: Check, env: Env) -> Client:
    """A ClickHouse client of the check's own, closed when the check ends."""
    ch = _clickhouse(env)
    ck.defer(ch.close)
    return ch




async def add_workload(ch: Client, user_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Workload events of `user_id`, as the platform's ingestion would have left them. Each row:
    model, prompt_tokens, completion_tokens and optionally requests (1), workload ("chat"),
    days_ago (1), latency_ms (100)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    data = [[user_id, now - timedelta(days=r.get("days_ago", 1)), r.get("workload", "chat"), r["model"],
             r.get("requests", 1), r["prompt_tokens"], r["completion_tokens"], r.get("latency_ms", 100.0)]
            for r in rows]
    await asyncio.to_thread(ch.insert, "workload_events", data, column_names=WORKLOAD_COLUMNS)


async def add_generated_workload(ch: Client, user_id: str, models: int) -> None:
    """`models` workload events of `user_id` within the last day, each of a model of its own,
    generated by ClickHouse itself (`numbers()`), so nothing crosses the wire. Totalling them per
    model (what the data agent's tool does) groups `models` keys and returns as many rows: real
    work that grows with `models`, where summing rows of a few models stays fast however many."""
    await asyncio.to_thread(
        ch.command,
        "INSERT INTO workload_events SELECT {u:String}, now() - toIntervalSecond(number % 86400), 'chat', "
        "concat('generated-', toString(number)), 1, 100, 10, 100 FROM numbers({n:UInt64})",
        parameters={"u": user_id, "n": models})


async def workload_totals_seconds(ch: Client, user_id: str, days: int) -> float:
    """How long totalling `user_id`'s workload per model over `days` takes, read whole: the
    work the data agent's `query_workload_events` does (its tool description), measured here
    to show a tool is slow by its data, not by a limit made smaller than any call."""
    sql = ("SELECT model, sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM workload_events "
           "WHERE user_id = {u:String} AND ts >= now() - toIntervalDay({d:UInt32}) GROUP BY model ORDER BY model")
    t0 = time.perf_counter()
    await asyncio.to_thread(lambda: ch.query(sql, parameters={"u": user_id, "d": days}).result_rows)
    return time.perf_counter() - t0


async def add_corpus_entries(ch: Client, owner_id: str, *entries: tuple[str, str, Sequence[str], float]) -> list[str]:
    """Corpus entries (title, content, tags, seconds ago) of `owner_id` written straight to
    ClickHouse, as earlier runs would have left them; their ids, in order."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = [[str(uuid.uuid4()), owner_id, title, content, list(tags), now - timedelta(seconds=ago)]
            for title, content, tags, ago in entries]
    await asyncio.to_thread(ch.insert, "corpus", rows, column_names=CORPUS_COLUMNS)
    return [r[0] for r in rows]


async def corpus_rows(ch: Client, where: str, **params: Any) -> list[list[Any]]:
    """[entry_id, owner_id, title, content, tags] of the corpus rows `where` selects, by id."""
    sql = f"SELECT entry_id, owner_id, title, content, tags FROM corpus WHERE {where} ORDER BY entry_id"
    rows = await asyncio.to_thread(lambda: ch.query(sql, parameters=params).result_rows)
    return [list(r) for r in rows]


async def corpus_ids(ch: Client, owner_id: str) -> set[str]:
    return {r[0] for r in await corpus_rows(ch, "owner_id = {u:String}", u=owner_id)}


async def corpus_titles(ch: Client, owner_id: str) -> list[str]:
    return sorted(r[2] for r in await corpus_rows(ch, "owner_id = {u:String}", u=owner_id))


def stranger_owner(ck: Check, env: Env) -> str:
    """Another owner's id (owning corpus rows needs no login); its rows go with the check."""
    owner = str(uuid.uuid4())
    ck.defer(asyncio.to_thread, clickhouse.forget_user_rows, env, owner)
    return owner


async def usage_event_rows(ch: Client, run_ids: Sequence[str], expected: int, within_s: float = 3.0) -> list[tuple]:
    """ClickHouse `usage_events` (run_id, seq, user_id, agent, model, prompt_tokens,
    completion_tokens, cost_usd) of the runs, once `expected` rows are there: a run writes them
    as it ends, so a reader may be a moment early."""
    sql = ("SELECT run_id, seq, user_id, agent, model, prompt_tokens, completion_tokens, cost_usd "
           "FROM usage_events WHERE run_id IN {ids:Array(String)} ORDER BY run_id, seq")

    async def read() -> list[tuple]:
        rows = await asyncio.to_thread(lambda: ch.query(sql, parameters={"ids": list(run_ids)}).result_rows)
        return [tuple(r) for r in rows]

    return await poll(read, until=lambda rows: len(rows) >= expected, within_s=within_s,
                      what=f"{expected} usage_events rows of {len(run_ids)} run(s)")


# -- arranging users and runs ----------------------------------------------------------------------

async def agent_user(ck: Check, auth: AsyncAuth, backend: AsyncBackend, model: AsyncLlm,
                     role: str | None = None) -> tuple[User, dict[str, Any]]:
    """A logged-in user (with `role` if given: only on destructive envs) and a thread of theirs;
    the thread, their ClickHouse rows, and the stand-in's faults and log entries for them go with
    the check (or with the notebook, for a user `wb.shared` made)."""
    # An agent check may meet both instances (a run on one, read or answered on the other) while a
    # platform clock runs (an input timeout, a lease): both are held from here, so the check never
    # waits behind another notebook's fault between the two.
    for instance in ("backend", "backend2"):
        await using(instance)
    user = await auth.register(unique_email(ck.ns), new_password())
    threads: list[str] = []
    ck.defer(forget_agent_user, auth, backend, model, user, threads)
    await auth.login(user)
    if role:
        await auth.grant_role(user, role)
    thread = await backend.create_thread(user.access, f"{ck.ns[:150]} workbook thread")
    threads.append(thread["id"])
    return user, thread


async def forget_agent_user(auth: AsyncAuth, backend: AsyncBackend, model: AsyncLlm, user: User,
                            threads: Sequence[str]) -> None:
    """Everything `agent_user` made goes at once, since every check pays for this: the thread
    (while the user's token still works), then the user's sessions where accounts are not deleted
    (where they are, deleting the account ends them); meanwhile their ClickHouse rows, and their
    faults and log at the stand-in."""
    async def as_the_user() -> None:
        for thread_id in threads:
            await backend.delete_thread_raw(user.access, thread_id)
        if not auth.env.expect.auth.user_deletion:
            await auth.end_sessions(user)

    await asyncio.gather(as_the_user(), asyncio.to_thread(clickhouse.forget_user_rows, backend.env, user.id),
                         *([model.clear(user.id)] if model.standin else []))


async def workload_user(scope: Check, auth: AsyncAuth, backend: AsyncBackend, model: AsyncLlm,
                        rows: Sequence[Mapping[str, Any]] = (), generated_models: int = 0) -> User:
    """A user whose workload is `rows` (as `add_workload` writes them) and `generated_models`
    generated events (as `add_generated_workload` makes them), for checks that only read it
    through their runs, each in a thread of its own; the rows go with the user."""
    user, _ = await agent_user(scope, auth, backend, model)
    ch = _clickhouse(backend.env)
    try:
        if rows:
            await add_workload(ch, user.id, rows)
        if generated_models:
            await add_generated_workload(ch, user.id, generated_models)
    finally:
        ch.close()
    return user


async def admin_user(scope: Check, auth: AsyncAuth) -> User:
    """A logged-in admin (made in auth's database: destructive envs only), for checks that need
    someone allowed to change plans and prices and that do not change the admin."""
    admin = await auth.new_user(scope)
    await auth.grant_role(admin, "admin")
    return admin


async def run_ended(backend: AsyncBackend, user: User, run_id: str, within_s: float = 10.0) -> Run:
    """The run once it ended (completed, failed, cancelled); `awaiting_input` is not an end here."""
    return await backend.settled(user.access, run_id, within_s, until=RUN_ENDED)


async def run_to_end(backend: AsyncBackend, user: User, thread: Mapping[str, Any],
                     within_s: float = 10.0, **body: Any) -> tuple[Run, list[Step]]:
    """Start a run, return it ended, with its steps."""
    run = await run_ended(backend, user, (await backend.start_run(user.access, thread["id"], **body))["id"], within_s)
    return run, await backend.run_steps(user.access, run["id"])


async def settled_run(backend: AsyncBackend, user: User, thread: Mapping[str, Any], text: str,
                      within_s: float = 10.0) -> tuple[Run, list[Step]]:
    """Start a run on `text`; return it once it ended or waits for the user's answer, with its steps."""
    run = await backend.settled(user.access, (await backend.start_run(user.access, thread["id"], input=text))["id"],
                                within_s)
    return run, await backend.run_steps(user.access, run["id"])


async def stop_waiting_run(backend: AsyncBackend, user: User, run_id: str) -> None:
    """A run left waiting for input is stopped and seen ended (not left to its input timeout,
    and not running when its thread is deleted)."""
    await backend.stop_run_raw(user.access, run_id)
    await run_ended(backend, user, run_id, 5)


async def run_statuses(backend: AsyncBackend, user: User, run: Run, within_s: float = 10.0) -> list[Run]:
    """The run as it was each time its status changed, from `run` (as it was started) until it
    ended: what a client polling it sees go by."""
    seen = [run]

    async def read() -> Run:
        now = await backend.run(user.access, run["id"])
        if seen[-1]["status"] != now["status"]:
            seen.append(now)
        return now

    await poll(read, until=lambda r: r["status"] in RUN_ENDED, within_s=within_s, what=f"run {run['id']} ended")
    return seen


async def steps_when(backend: AsyncBackend, user: User, run_id: str, until: Callable[[list[Step]], bool],
                     within_s: float = 10.0, what: str = "") -> list[Step]:
    """The run's steps once `until(steps)` holds."""
    return await poll(lambda: backend.run_steps(user.access, run_id), until=until, within_s=within_s,
                      what=what or f"steps of run {run_id}")


async def steps_once_started(backend: AsyncBackend, user: User, run_id: str, agent: str,
                             within_s: float = 5.0) -> list[Step]:
    """The run's steps once `agent` has started (its model call is then under way)."""
    return await steps_when(backend, user, run_id, lambda s: agent in agents_started(s), within_s,
                            f"run {run_id} reached {agent}")


async def steps_at_rest(backend: AsyncBackend, user: User, run_id: str, still_s: float) -> list[Step]:
    """The run's steps once they stayed the same for `still_s`: for checks that a run does
    nothing more (a waiting run, one that ended) where something late would show within that."""
    return await poll(lambda: backend.run_steps(user.access, run_id), until=lambda _: True, settle_s=still_s,
                      within_s=still_s + 5, what=f"steps of run {run_id} unchanged for {still_s:g} s")


async def calls_at_rest(model: AsyncLlm, user: User, still_s: float) -> list[Call]:
    """The user's model calls once the log stayed the same for `still_s` (a call in flight is
    logged when it answers)."""
    return await poll(lambda: model.requests(user.id), until=lambda _: True, settle_s=still_s, within_s=still_s + 5,
                      what=f"model calls of {user.id} unchanged for {still_s:g} s")


async def fault_taken(model: AsyncLlm, user: User, within_s: float = 5.0) -> None:
    """Wait until the stand-in has taken the user's pending faults: a latency fault is then a
    model call in flight (the stand-in logs it only when it answers)."""
    await poll(lambda: model.faults(user.id), until=lambda pending: not pending, within_s=within_s,
               what=f"the stand-in took {user.id}'s faults")


async def agent_limits(backend: AsyncBackend) -> dict[str, Any]:
    """The limits and clocks `backend` holds runs to (`/health/agents`): timeouts, the run lease,
    the price cache's TTL, the model client's backoff and breaker reset."""
    return (await backend.agents())["limits"]


async def answer_concurrently(instances: Sequence[AsyncBackend], user: User, run_id: str,
                              count: int, spread_s: float) -> list[tuple[int, int, str | None]]:
    """`count` different answers to one waiting run, alternating instances, started evenly over
    `spread_s` (across the moment the run takes its answer): (i, status, error) each; answer i
    names the last i + 1 days."""

    async def one(i: int) -> tuple[int, int, str | None]:
        await asyncio.sleep(i * spread_s / count)  # the race's shape, not a wait for the platform
        resp = await instances[i % len(instances)].answer_raw(user.access, run_id,
                                                              {"timeframe": f"the last {i + 1} days"})
        return i, resp.status_code, resp.json().get("error")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def post_messages(backend: AsyncBackend, user: User, thread: Mapping[str, Any], *texts: str) -> None:
    """User messages in the thread, in order (the thread's history for the next run)."""
    for text in texts:
        resp = await backend.add_message_raw(user.access, thread["id"], text)
        assert resp.status_code == 201, redact(resp.text)[:200]


# -- reading a run's steps ---------------------------------------------------------------------------

def step_kinds(steps: Sequence[Step]) -> list[str]:
    return [s["kind"] for s in steps]


def agents_started(steps: Sequence[Step]) -> list[str]:
    """The agents in the order they started."""
    return [s["agent"] for s in steps if s["kind"] == "agent_started"]


def model_calls(steps: Sequence[Step]) -> list[Step]:
    """The completed model calls (one `agent_thinking` step each; streamed pieces are partial)."""
    return [s for s in steps if s["kind"] == "agent_thinking" and not s["detail"].get("partial")]


def outcome_steps(steps: Sequence[Step]) -> list[Step]:
    return [s for s in steps if s["kind"] in OUTCOMES]


def output_of(steps: Sequence[Step], agent: str) -> Any:
    """What `agent` handed on: the output of its `agent_completed` step."""
    return next(s["detail"]["output"] for s in steps if s["kind"] == "agent_completed" and s["agent"] == agent)


def handoff_steps(steps: Sequence[Step]) -> list[Step]:
    return [s for s in steps if s["kind"] == "agent_started"]


def handoff_to(steps: Sequence[Step], agent: str) -> dict[str, Any]:
    """How `agent` was started: {from, input} of its `agent_started` step."""
    return next(s["detail"]["handoff"] for s in handoff_steps(steps) if s["agent"] == agent)


def tool_step(steps: Sequence[Step], tool: str) -> dict[str, Any]:
    """The detail of `tool`'s `tool_completed` step."""
    return next(s["detail"] for s in steps if s["kind"] == "tool_completed" and s["detail"]["tool"] == tool)


def tool_call_steps(steps: Sequence[Step]) -> list[Step]:
    return [s for s in steps if s["kind"] in ("tool_executing", "tool_completed")]


def errored_tool_step(steps: Sequence[Step]) -> Step:
    return next(s for s in steps if s["kind"] == "tool_completed" and s["status"] == "error")


def timed_steps(steps: Sequence[Step]) -> list[Step]:
    """The steps that measure something: completed model calls, tool calls, agents."""
    return [s for s in steps if s["kind"] in TIMED_KINDS and not s["detail"].get("partial")]


def sub_agent_spans(steps: Sequence[Step]) -> list[str]:
    """The sub-agents in the order they ran, each checked to start, act and end before the next
    starts (the supervisor's own steps may come only between them)."""
    order: list[str] = []
    current: str | None = None
    for s in steps:
        if s["agent"] == "supervisor" or s["kind"] == "final_report":
            assert current is None or s["kind"] == "agent_error", f"supervisor step {s['kind']} inside {current}"
            continue
        if s["kind"] == "agent_started":
            assert current is None, f"{s['agent']} started inside {current}"
            current = s["agent"]
            order.append(current)
        else:
            assert s["agent"] == current, f"step {s['seq']} {s['kind']} of {s['agent']} inside {current}"
            if s["kind"] == "agent_completed":
                current = None
    return order


def step_shape(steps: Sequence[Step]) -> list[tuple[str, str, str]]:
    """(kind, agent, name) per step, the streamed pieces of one model call folded into one "stream"."""
    out: list[tuple[str, str, str]] = []
    for s in steps:
        item = (s["kind"], s["agent"], "stream" if s["detail"].get("partial") else s["name"])
        if not (item[2] == "stream" and out and out[-1] == item):
            out.append(item)
    return out


def step_order_view(steps: Sequence[Step]) -> list[tuple[str, int, int, str]]:
    """(kind, event id, seq, agent) per step: what a socket's events must repeat, in order."""
    return [(s["kind"], s["event_id"], s["seq"], s["agent"]) for s in steps]


def event_order_view(events: Iterable[Event], run_id: str) -> list[tuple[str, int, int, str]]:
    """(type, event id, step, agent) of the run's step events among a socket's messages."""
    return [(e["type"], e["event_id"], e["payload"]["step"], e["payload"]["agent"])
            for e in events if e.get("run_id") == run_id and e["type"] in STEP_KINDS]


def assert_events_are_steps(events: Sequence[Event], steps: Sequence[Step]) -> None:
    """Each event is one persisted step: same id, kind, seq, agent and detail, in the same order
    (an event adds the agent, step number, run context, instance and the trace it belongs to, when
    traced, to the step's detail)."""
    added = {"agent", "step", "context", "instance_id", "trace_id", "span_id"}
    assert [(e["event_id"], e["type"], e["payload"]["step"], e["payload"]["agent"]) for e in events] == \
        [(s["event_id"], s["kind"], s["seq"], s["agent"]) for s in steps], \
        f"events {[e['type'] for e in events]} vs steps {step_kinds(steps)}"
    for e, s in zip(events, steps):
        assert {k: v for k, v in e["payload"].items() if k not in added} == s["detail"], (e["type"], s["seq"])


def assert_failed_tool_step(steps: Sequence[Step], name: str, code: str) -> Step:
    """The run's only tool call was announced, then failed with `code` without a result, and
    the run's `agent_error` carries the same code; returns the failed step."""
    execu, done = tool_call_steps(steps)
    assert (execu["name"], execu["status"], done["name"]) == (name, "running", name), (execu, done)
    assert done["detail"]["call_id"] == execu["detail"]["call_id"], "the failed step is not the announced call"
    assert (done["status"], done["detail"]["status"], done["detail"]["code"]) == ("error", "error", code), done
    assert "result" not in done["detail"], f"a refused call has a result: {done['detail']}"
    assert steps[-1]["kind"] == "agent_error" and steps[-1]["detail"]["code"] == code, step_kinds(steps)[-3:]
    return done


def assert_interrupted_after(steps: Sequence[Step], before: Sequence[Step]) -> Step:
    """The steps persisted before a crash unchanged, then one `agent_error` (interrupted), in
    sequence; returns that last step."""
    assert list(steps[:-1]) == list(before), f"steps changed by the crash: {step_kinds(before)} -> {step_kinds(steps)}"
    assert [s["seq"] for s in steps] == list(range(1, len(steps) + 1)), [s["seq"] for s in steps]
    last = steps[-1]
    assert (last["kind"], last["status"], last["detail"]["code"]) == ("agent_error", "error", "interrupted"), last
    return last


def nul_paths(value: Any, where: str = "") -> list[str]:
    """Where in a JSON-like value a string holds a NUL character (PostgreSQL cannot store one)."""
    if isinstance(value, str):
        return [where or "."] if "\x00" in value else []
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in nul_paths(k, f"{where}/{k}(key)") + nul_paths(v, f"{where}/{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in nul_paths(v, f"{where}/{i}")]
    return []


def iso_seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_seconds(run: Run) -> float:
    """From the run's start to its end, as the platform recorded them."""
    return iso_seconds_between(run["started_at"], run["finished_at"])


# -- the model provider's request log ------------------------------------------------------------

async def log_mark(model: AsyncLlm, user: User) -> int:
    """The id of the user's newest logged model call (0 if none): `model.requests(user.id, since=mark)`
    then reads only the calls made after it, for a user whose earlier runs belong to other checks."""
    log = await model.requests(user.id)
    return log[-1]["id"] if log else 0


def calls_of(log: Iterable[Call], role: str) -> list[Call]:
    """The logged model calls of one agent role (failed attempts included)."""
    return [e for e in log if e["role"] == role]


def answered(log: Iterable[Call], role: str | None = None) -> list[Call]:
    """The calls the provider answered (failed attempts are not billed), of `role` if given."""
    return [e for e in log if e["status"] == 200 and role in (None, e["role"])]


def model_roles(log: Iterable[Call]) -> list[str]:
    """The agents that called the model, in order, consecutive calls of one agent once."""
    out: list[str] = []
    for e in log:
        if not out or out[-1] != e["role"]:
            out.append(e["role"])
    return out


def repair_turn(entry: Call) -> str | None:
    """The repair message of a logged model request (its last user message), or None."""
    last = entry["messages"][-1]
    return last["content"] if last["role"] == "user" and "did not validate" in last["content"] else None


def seconds_between_calls(entries: Sequence[Call]) -> list[float]:
    """The gaps between consecutive logged calls, in seconds (a retry's backoff)."""
    at = [datetime.fromisoformat(e["at"]) for e in entries]
    return [(b - a).total_seconds() for a, b in zip(at, at[1:])]


async def triage_prompt(backend: AsyncBackend, model: AsyncLlm, user: User, run: Run) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The run's last triage call as the model received it (its messages), and the note the
    triage step recorded about the history it kept."""
    log = calls_of(await model.requests(user.id), "triage")
    step = next(s for s in await backend.run_steps(user.access, run["id"]) if s["kind"] == "agent_thinking")
    return log[-1]["messages"], step["detail"]


# -- thread history: the platform's documented token estimate ------------------------------------

def estimated_tokens(text: str) -> int:
    """The platform's documented estimate (app/common/tokens.py): words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def filler_message(tag: str, tokens: int) -> str:
    """A message of exactly `tokens` tokens by that estimate: the tag, then tokens - 1 words."""
    return " ".join([tag] + ["alpha"] * (tokens - 1))


# -- money: the savings rule and prices, recomputed ----------------------------------------------

MILLION = Decimal(1_000_000)


def priced_usd(prompt: int, completion: int, price: Mapping[str, Any]) -> Decimal:
    """Tokens at a catalog price (USD per million tokens), exact."""
    return (prompt * Decimal(price["input_usd_per_mtok"]) + completion * Decimal(price["output_usd_per_mtok"])) / MILLION


async def catalog_prices(backend: AsyncBackend, user: User) -> dict[str, dict[str, Any]]:
    """The supply catalog as the API shows it, by model."""
    return {m["model"]: m for m in await backend.supply_models(user.access)}


def reference_savings(rows: Iterable[Mapping[str, Any]], catalog: Iterable[Mapping[str, Any]],
                      days: int = 7) -> tuple[list[dict[str, Any]], Decimal, Decimal]:
    """The savings rule (the docstring of app/agents/workers/analysis.py) recomputed from the
    workload rows a check inserted (those within `days`) and the catalog prices:
    (recommendations, current cost, savings), amounts as Decimal."""
    used: dict[str, tuple[int, int]] = {}
    for r in rows:
        if r.get("days_ago", 1) < days:
            p, c = used.get(r["model"], (0, 0))
            used[r["model"]] = (p + r["prompt_tokens"], c + r["completion_tokens"])
    price = {m["model"]: m for m in catalog}
    recs: list[dict[str, Any]] = []
    current, saved = Decimal(0), Decimal(0)
    for name, (p, c) in sorted(used.items()):
        if name not in price:
            continue
        now = priced_usd(p, c, price[name])
        best = min((q for q in price if price[q]["tier"] >= price[name]["tier"]),
                   key=lambda q: (priced_usd(p, c, price[q]), q))
        current += now
        then = priced_usd(p, c, price[best])
        if then < now:
            saved += now - then
            recs.append({"model": name, "switch_to": best, "current_cost_usd": now, "new_cost_usd": then,
                         "savings_usd": now - then})
    return recs, current, saved


def as_decimals(recs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The platform's recommendations with their amounts as Decimal (they are exact decimal strings)."""
    return [{k: Decimal(v) if k.endswith("_usd") else v for k, v in r.items()} for r in recs]


# -- supply catalog, plans ---------------------------------------------------------------------------

async def own_catalog_model(ck: Check, backend: AsyncBackend, admin: User, name: str, **price: Any) -> None:
    """A catalog model of the check's own (tier 0; the seeded models price other checks' runs),
    created through the admin API if `price` is given, removed with the check either way."""
    ck.defer(backend.remove_model_raw, admin.access, name)
    if price:
        resp = await backend.set_price_raw(admin.access, name, source=ck.ns, tier=0, **price)
        assert resp.status_code == 200, f"set price of {name}: {resp.status_code} {redact(resp.text)[:200]}"


async def catalog_price(backend: AsyncBackend, user: User, name: str) -> dict[str, Any]:
    """One model's price as `backend` serves it (with `cached`: whether it came from Redis)."""
    resp = await backend.supply_model_raw(user.access, name)
    assert resp.status_code == 200, f"{name} on {backend.url}: {resp.status_code} {redact(resp.text)[:200]}"
    return resp.json()


def price_update_task(name: str, input_usd: str, output_usd: str, source: str) -> str:
    """The supply researcher's task to record a price (tier 0) for `name`."""
    return (f"update_model_price\nmodel: {name}\ninput_usd_per_mtok: {input_usd}\n"
            f"output_usd_per_mtok: {output_usd}\nsource: {source}\ntier: 0")


def next_utc_midnight() -> datetime:
    """When daily run quotas reset."""
    return datetime.combine(datetime.now(timezone.utc).date() + timedelta(days=1), datetime.min.time(),
                            tzinfo=timezone.utc)


async def put_on_plan(backend: AsyncBackend, admin: User, user: User, plan: str) -> dict[str, Any]:
    """`admin` moves `user` to `plan`; returns the plan status the API answered."""
    resp = await backend.set_plan_raw(admin.access, user.id, plan)
    assert resp.status_code == 200, f"set plan {plan}: {resp.status_code} {redact(resp.text)[:200]}"
    return resp.json()


async def settle_all(backend: AsyncBackend, user: User, runs: Sequence[Run]) -> list[Run]:
    return list(await asyncio.gather(*(backend.settled(user.access, r["id"]) for r in runs)))


async def start_runs_alternating(ck: Check, instances: Sequence[AsyncBackend], user: User,
                                 thread: Mapping[str, Any], count: int, text: str = VAGUE_REQUEST) -> list[Run]:
    """`count` runs started at once, alternating instances; each must be accepted (202). They
    are waited for before the check's cleanup deletes their thread."""
    runs = list(await asyncio.gather(*(instances[i % len(instances)].start_run(user.access, thread["id"], input=text)
                                       for i in range(count))))
    ck.defer(settle_all, instances[0], user, runs)
    return runs


def user_messages(listing: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [m for m in listing["messages"] if m["role"] == "user"]


# -- the WebSocket -----------------------------------------------------------------------------------

async def start_over_socket(sock: Socket, thread: Mapping[str, Any], until: tuple[str, ...] = OUTCOMES,
                            **body: Any) -> tuple[Run, list[Event]]:
    """`start_agent` on `sock`: the accepted run (acknowledged exactly once) and every message
    up to the first of type `until` (an `error` fails)."""
    await sock.send("start_agent", thread_id=thread["id"], **body)
    got = await sock.until(lambda m: m["type"] in until + ("error",), 10)
    assert got[-1]["type"] != "error", f"start_agent refused: {got[-1]['payload']}"
    accepted = [m for m in got if m["type"] == "run_accepted"]
    assert len(accepted) == 1, [m["type"] for m in got]
    return accepted[0]["payload"]["run"], got


async def socket_run_events(ck: Check, instance: AsyncBackend, user: User, thread: Mapping[str, Any],
                            within_s: float = 15, **body: Any) -> tuple[str, list[Event]]:
    """Start a run over a new socket of `instance`: its id and every step event the socket
    received until that run's last step (any run's, so a stray event shows)."""
    sock = await instance.socket(ck, user)
    await sock.send("start_agent", thread_id=thread["id"], **body)
    accepted = (await sock.until("run_accepted", within_s))[-1]["run_id"]
    await sock.until(lambda m: m["type"] in OUTCOMES and m["run_id"] == accepted, within_s)
    return accepted, [m for m in sock.received if m["type"] in STEP_KINDS]


# -- the model provider's circuit breaker ------------------------------------------------------------

async def model_breaker(instance: AsyncBackend) -> dict[str, Any]:
    return (await instance.breakers())["llm"]


async def close_model_breaker(model: AsyncLlm, instance: AsyncBackend, user: User,
                              thread: Mapping[str, Any]) -> dict[str, Any]:
    """After a check opened `instance`'s model breaker: drop the user's faults, wait out the
    reset, let one run through (the half-open trial call) and see the breaker closed again.
    Returns the breaker."""
    await model.clear(user.id)
    breaker = await model_breaker(instance)
    if breaker["state"] != "closed":
        await poll(lambda: model_breaker(instance), until=lambda b: b["state"] != "open",
                   within_s=breaker["reset_s"] + 5, what=f"{instance.service}'s model breaker half-open")
        await instance.agent_run(user.access, thread["id"], input=VAGUE_REQUEST)
        breaker = await model_breaker(instance)
    assert breaker["state"] == "closed", f"the model breaker did not close after a good trial call: {breaker}"
    return breaker


def step_histogram(metrics_text: str, labels: Mapping[str, Mapping[str, str]]) -> dict[str, tuple[float, float, float]]:
    """Per named label set: (count, sum, count at le=0.5 s) of `backend_agent_step_seconds` in an
    instance's Prometheus exposition."""
    return {k: (metric(metrics_text, "backend_agent_step_seconds_count", **l),
                metric(metrics_text, "backend_agent_step_seconds_sum", **l),
                metric(metrics_text, "backend_agent_step_seconds_bucket", le="0.5", **l)) for k, l in labels.items()}
