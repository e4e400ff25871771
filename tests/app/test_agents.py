"""The agents' parts that decide outcomes on their own: the LLM client against a real
stand-in (retries, fallback, refusals, streaming, the breaker), the tool dispatcher's
validation, and the savings rule."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from app.agents.catalog import Price
from app.agents.context import ExecutionContext, Limits
from app.agents.llm import LlmClient, LlmError, ProviderFailure
from app.agents.scope import RunScope, RunTimedOut
from app.agents.tools import Tool, ToolFailure, dispatch
from app.agents.workers.analysis import savings
from app.common.breaker import CircuitBreaker
from app.common.settings import BackendSettings
from workbook.stack.llm_standin import root_url

TRIAGE = [{"role": "system", "content": "agent: triage\nClassify."},
          {"role": "user", "content": "Cut the cost of my workload requests over the last 7 days"}]


@pytest.fixture
def user(standin: tuple[str, str]) -> Iterator[str]:
    """A caller id of its own: the stand-in's faults for it touch no other test."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    url, key = standin
    httpx.delete(f"{root_url(url)}/_standin/faults", params={"user": name}, headers={"Authorization": f"Bearer {key}"})


def fault(standin: tuple[str, str], user: str, **spec: object) -> None:
    url, key = standin
    r = httpx.post(f"{root_url(url)}/_standin/faults", json={"user": user, **spec},
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text


def client(standin: tuple[str, str], threshold: int = 10, **overrides: object) -> LlmClient:
    url, key = standin
    settings = BackendSettings(llm_base_url=url, llm_api_key=key, llm_backoff_s=0.01, **overrides)
    breaker = CircuitBreaker("llm", threshold, 60, counted=(ProviderFailure,))
    return LlmClient(settings, httpx.AsyncClient(), breaker)


def complete(llm: LlmClient, user: str, **kwargs: object):
    return asyncio.run(llm.complete(TRIAGE, user=user, json_output=True, **kwargs))


def test_a_500_is_retried_on_the_same_model(standin: tuple[str, str], user: str) -> None:
    fault(standin, user, kind="status", status=500, count=2)
    done = complete(client(standin), user)
    assert done.model == "standin-large" and not done.fallback_used
    assert [a["attempt"] for a in done.attempts] == [1, 2] and "500" in done.attempts[0]["error"]
    assert done.prompt_tokens > 0 and done.completion_tokens > 0


def test_a_model_that_keeps_failing_falls_back(standin: tuple[str, str], user: str) -> None:
    fault(standin, user, kind="status", status=503, count=100, model="standin-large")
    done = complete(client(standin), user)
    assert done.model == "standin-small" and done.fallback_used
    assert len(done.attempts) == 3  # retries=2 on the primary, then the fallback answered


def test_every_model_failing_is_llm_unavailable_naming_the_tries(standin: tuple[str, str], user: str) -> None:
    fault(standin, user, kind="status", status=429, count=100)
    with pytest.raises(LlmError) as e:
        complete(client(standin, llm_retries=1), user)
    # Counted per try, not as a substring: the fault's random id can contain "429" too.
    assert e.value.code == "llm_unavailable" and len(re.findall(r"try \d+: 429 ", e.value.reason)) == 4


def test_a_4xx_is_not_retried(standin: tuple[str, str], user: str) -> None:
    with pytest.raises(LlmError) as e:
        complete(client(standin, llm_model="no-such-model", llm_fallback_model=None), user)
    assert e.value.code == "llm_rejected" and "404" in e.value.reason


def test_a_malformed_answer_is_retried(standin: tuple[str, str], user: str) -> None:
    fault(standin, user, kind="malformed_body", count=1)
    done = complete(client(standin), user)
    assert "malformed" in done.attempts[0]["error"] and done.content and done.content.startswith("{")


def test_streaming_hands_over_pieces_and_usage(standin: tuple[str, str], user: str) -> None:
    pieces: list[str] = []

    async def on_delta(piece: str) -> None:
        pieces.append(piece)

    done = asyncio.run(client(standin).complete([{"role": "user", "content": "write a report about it"}],
                                                user=user, on_delta=on_delta))
    assert len(pieces) >= 2 and "".join(pieces) == done.content and done.completion_tokens > 0


def test_the_breaker_opens_and_then_fails_fast(standin: tuple[str, str], user: str) -> None:
    fault(standin, user, kind="status", status=500, count=100)
    llm = client(standin, threshold=3, llm_retries=0, llm_fallback_model=None)

    async def four_calls() -> list[LlmError]:  # one event loop: the client's connections belong to it
        errors = []
        for _ in range(4):
            try:
                await llm.complete(TRIAGE, user=user)
            except LlmError as e:
                errors.append(e)
        return errors

    errors = asyncio.run(four_calls())
    assert [e.code for e in errors] == ["llm_unavailable"] * 4
    assert "breaker is open" in errors[3].reason and "breaker" not in errors[2].reason
    assert llm.breaker.rejected == 1 and llm.breaker.failures == 3


async def _echo(scope: object, args: dict) -> dict:
    return args


async def _slow(scope: object, args: dict) -> dict:
    await asyncio.sleep(1)
    return {}


TOOLS = {"echo": Tool("echo", "echo", {"type": "object", "additionalProperties": False, "required": ["days"],
                                       "properties": {"days": {"type": "integer", "minimum": 1}}}, _echo),
         "slow": Tool("slow", "sleeps", {"type": "object"}, _slow)}


@pytest.mark.parametrize(("name", "raw", "code"), [
    ("nope", "{}", "unknown_tool"),
    ("echo", "{days: 3", "invalid_arguments"),
    ("echo", '{"days": 0}', "invalid_arguments"),
    ("echo", '{"days": 3, "user_id": "someone else"}', "invalid_arguments"),
    ("slow", "{}", "tool_timeout"),
    ("echo", '{"days": ' + "9" * 5000 + "}", "invalid_arguments"),  # JSON, but past the int digit limit
])
def test_the_dispatcher_refuses_bad_calls_with_a_code(name: str, raw: str, code: str) -> None:
    with pytest.raises(ToolFailure) as e:
        asyncio.run(dispatch(TOOLS, None, name, raw, timeout_s=0.1))  # type: ignore[arg-type]
    assert e.value.code == code


def test_arguments_past_the_parsers_limits_say_so() -> None:
    cases = (('{"days": ' + "9" * 5000 + "}", "integer too long"), ("[" * 5000 + "]" * 5000, "nested too deeply"))
    for raw, why in cases:
        with pytest.raises(ToolFailure) as e:
            asyncio.run(dispatch(TOOLS, None, "echo", raw, timeout_s=1))  # type: ignore[arg-type]
        assert why in e.value.reason, e.value.reason


def test_the_dispatcher_runs_a_valid_call() -> None:
    assert asyncio.run(dispatch(TOOLS, None, "echo", '{"days": 3}', 1)) == {"days": 3}  # type: ignore[arg-type]


def price(model: str, inp: str, out: str, tier: int) -> Price:
    return Price(model, "p", Decimal(inp), Decimal(out), tier, "", "")


def test_savings_switch_to_the_cheapest_model_of_at_least_the_same_tier() -> None:
    catalog = [price("big", "10", "30", 3), price("big-cheap", "1", "3", 3), price("small", "0.1", "0.1", 1)]
    rows = [{"model": "big", "prompt_tokens": 1_000_000, "completion_tokens": 1_000_000},
            {"model": "small", "prompt_tokens": 1_000_000, "completion_tokens": 0},
            {"model": "unknown", "prompt_tokens": 5, "completion_tokens": 5}]
    out = savings(rows, catalog)
    assert out["recommendations"] == [{"model": "big", "switch_to": "big-cheap", "current_cost_usd": "40",
                                       "new_cost_usd": "4", "savings_usd": "36"}]
    assert out["current_cost_usd"] == "40.1" and out["savings_usd"] == "36" and out["unpriced_models"] == ["unknown"]
    assert out["savings_pct"] == "89.78"


def test_a_writing_tool_past_its_timeout_finishes_and_is_undone() -> None:
    written: list[str] = []

    async def write(scope: object, args: dict) -> dict:
        await asyncio.sleep(0.2)  # like a write in a worker thread: cancelling would not stop it
        written.append("row")
        return {"id": 1}

    async def undo(scope: object, args: dict, result: dict) -> None:
        written.remove("row")

    tool = Tool("write", "writes", {"type": "object"}, write, undo=undo)
    with pytest.raises(ToolFailure) as e:
        asyncio.run(dispatch({"write": tool}, None, "write", "{}", timeout_s=0.05))  # type: ignore[arg-type]
    assert e.value.code == "tool_timeout" and "undone" in e.value.reason and written == []


def test_a_run_timeout_lost_to_a_call_finishing_at_that_moment_still_ends_the_run() -> None:
    """asyncio.wait_for (Python < 3.12) returns the result of a call that completes in the same
    loop iteration as the cancellation meant for it, so the run's timeout can pass unnoticed;
    the next checkpoint ends the run anyway."""
    ctx = ExecutionContext(user_id="u", thread_id="t", run_id=str(uuid.uuid4()), role="member")
    limits = Limits(step_timeout_s=5, tool_timeout_s=5, run_timeout_s=0.05, input_timeout_s=5, context_max_tokens=100)
    scope = RunScope(None, ctx, limits)  # type: ignore[arg-type]  # a passed deadline ends it before any store is used
    went_on: list[str] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        scope.deadline = loop.time() + limits.run_timeout_s
        async with asyncio.timeout_at(scope.deadline):
            answer = loop.create_future()
            loop.call_at(scope.deadline, answer.set_result, "the model's answer")
            went_on.append(await asyncio.wait_for(answer, 5))  # the timeout's cancellation is swallowed here
            await scope.checkpoint()
            went_on.append("the next step")

    with pytest.raises(RunTimedOut):
        asyncio.run(run())
    assert went_on == ["the model's answer"]
