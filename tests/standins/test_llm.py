"""The LLM stand-in as a real process on a free port: the OpenAI surface, the deterministic
policy, honest usage, faults scoped to one caller, and the request log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from standins.llm.tokens import count
from workbook.stack.llm_standin import root_url

LARGE = "standin-large"
SEARCH = {"type": "function", "function": {
    "name": "search_corpus", "description": "search the content corpus",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string"},
        "limit": {"type": "integer"},
        "days": {"type": "integer", "default": 7},
        "kind": {"type": "string", "enum": ["docs", "prices", "news"]},
        "window": {"type": "integer"},
        "exact": {"type": "boolean"},
        "tags": {"type": "array"},
    }, "required": ["query", "kind", "window", "tags"]}}}
OTHER = {"type": "function", "function": {"name": "get_usage", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
def api(standin: tuple[str, str]) -> Iterator[httpx.Client]:
    url, key = standin
    with httpx.Client(base_url=root_url(url), timeout=30, headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


@pytest.fixture
def user(api: httpx.Client) -> Iterator[str]:
    name = f"check-{uuid.uuid4().hex[:10]}"
    yield name
    api.delete("/_standin/faults", params={"user": name})
    api.delete("/_standin/requests", params={"user": name})


def chat(api: httpx.Client, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return api.post("/v1/chat/completions", json={"model": LARGE, "messages": messages, **extra})


def ask(task: str, role: str | None = None) -> list[dict[str, Any]]:
    system = [{"role": "system", "content": f"You are a helper. agent: {role}"}] if role else []
    return [*system, {"role": "user", "content": task}]


def message(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]


def fault(api: httpx.Client, **spec: Any) -> dict[str, Any]:
    r = api.post("/_standin/faults", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def sse(r: httpx.Response) -> list[str]:
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    return [line.removeprefix("data: ") for line in r.text.split("\n\n") if line]


def test_health_and_models(api: httpx.Client, standin: tuple[str, str]) -> None:
    health = httpx.get(f"{root_url(standin[0])}/health", timeout=10)  # no key needed
    assert health.status_code == 200 and health.json()["models"] == [LARGE, "standin-small"], health.text
    models = api.get("/v1/models").json()
    assert models["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in models["data"]] == [
        (LARGE, "model", "llm-standin"), ("standin-small", "model", "llm-standin")]
    assert all(isinstance(m["created"], int) for m in models["data"])


def test_key_required_everywhere_but_health(standin: tuple[str, str]) -> None:
    base = root_url(standin[0])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {standin[1]}"}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                             ("GET", "/_standin/requests"), ("POST", "/_standin/faults")):
            r = httpx.request(method, f"{base}{path}", headers=headers, json={}, timeout=10)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.json()["error"]["code"] == "invalid_api_key" and r.json()["error"]["type"]
            assert standin[1] not in r.text


def test_tool_call_arguments_come_from_the_task_and_schema(api: httpx.Client) -> None:
    task = "Find GPU prices over 30 days with search_corpus.\nquery: gpu spot prices; limit=5\nexact = true"
    got = message(chat(api, ask(task, "data"), tools=[OTHER, SEARCH]))
    assert got["content"] is None and len(got["tool_calls"]) == 1
    call = got["tool_calls"][0]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "search_corpus"  # named in the task, though not offered first
    assert json.loads(call["function"]["arguments"]) == {
        "query": "gpu spot prices", "limit": 5, "exact": True,  # written in the task, coerced by type
        "days": 7,  # the schema's default
        "kind": "prices", "window": 30, "tags": [],  # required: guessed from the task
    }
    # Nothing named: the first tool; a tool result after the question ends the tool loop.
    first = message(chat(api, ask("how much do we use?"), tools=[OTHER, SEARCH]))
    assert first["tool_calls"][0]["function"] == {"name": "get_usage", "arguments": "{}"}
    assert chat(api, ask("x"), tools=[OTHER], tool_choice="none").json()["choices"][0]["finish_reason"] == "stop"


def test_final_answer_after_tool_results_is_deterministic(api: httpx.Client) -> None:
    messages = [*ask("search_corpus for gpu prices", "data"),
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "search_corpus", "arguments": "{}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "get_usage", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_a", "content": json.dumps({"rows": [1, 2], "note": "ok"})},
                {"role": "tool", "tool_call_id": "call_b", "content": "plain text " + "x" * 500}]
    first = chat(api, messages, tools=[SEARCH, OTHER])
    got = message(first)
    assert first.json()["choices"][0]["finish_reason"] == "stop"
    assert got["content"] == ('data: search_corpus returned {"rows":[1,2],"note":"ok"}; '
                              f"get_usage returned {('plain text ' + 'x' * 500)[:400]}")
    assert message(chat(api, messages, tools=[SEARCH, OTHER]))["content"] == got["content"]


@pytest.mark.parametrize(("task", "category", "sufficiency", "missing", "confidence"), [
    ("Cut our spend: usage of the chat workload over the last 14 days", "cost_optimization", "sufficient", [], 0.9),
    ("Latency is bad for the search workload", "performance", "partial", ["timeframe"], 0.6),
    ("Can you help me?", "general", "insufficient", ["workload", "timeframe"], 0.3),
])
def test_triage_json(api: httpx.Client, task: str, category: str, sufficiency: str, missing: list[str],
                     confidence: float) -> None:
    got = message(chat(api, ask(task, "Triage"), response_format={"type": "json_object"}))
    assert json.loads(got["content"]) == {"category": category, "sufficiency": sufficiency, "missing": missing,
                                          "confidence": confidence}


def test_other_roles_json_and_plain_text(api: httpx.Client) -> None:
    helper = message(chat(api, ask("Ask the user.\nmissing: workload, budget", "data_helper"),
                          response_format={"type": "json_object"}))
    assert json.loads(helper["content"]) == {"questions": [
        {"field": "workload", "question": "Which workload or service should I analyse?"},
        {"field": "budget", "question": "Please provide budget."}]}
    long_task = "summarise " + "word " * 100
    summary = message(chat(api, ask(long_task, "reporting"), response_format={"type": "json_schema"}))
    assert json.loads(summary["content"]) == {"role": "reporting", "summary": long_task[:200]}
    plain = message(chat(api, ask("  hello\n\n  there  " + "y" * 400)))
    assert plain["content"] == "assistant: " + ("hello there " + "y" * 400)[:300]


def recount(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, answer: dict[str, Any]) -> dict:
    """Usage as standins/llm/tokens.py documents it, recounted here from the words."""
    def text(content: Any) -> str:
        if isinstance(content, list):
            return "\n".join(p["text"] for p in content if p.get("type") == "text")
        return content or ""

    prompt = sum(count(text(m.get("content"))) + 4 for m in messages)
    prompt += sum(count(json.dumps([c["function"]["arguments"] for c in m["tool_calls"]]))
                  for m in messages if m.get("tool_calls"))
    prompt += count(json.dumps(tools)) if tools else 0
    completion = (count(json.dumps([c["function"] for c in answer["tool_calls"]])) if answer.get("tool_calls")
                  else count(answer["content"]))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def test_usage_is_the_documented_recount(api: httpx.Client) -> None:
    messages = [{"role": "system", "content": "agent: data"},
                {"role": "user", "content": [{"type": "text", "text": "Look at GPU prices,"},
                                             {"type": "text", "text": "please (now)!"}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_usage", "arguments": '{"a": 1}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": '{"rows": 3}'},
                {"role": "user", "content": "now search_corpus query: h100"}]
    for tools in ([SEARCH, OTHER], None):
        r = chat(api, messages, tools=tools) if tools else chat(api, messages)
        assert r.json()["usage"] == recount(messages, tools, message(r)), r.text


def test_stream_chunks_usage_and_done(api: httpx.Client, user: str) -> None:
    task = "please explain in many small words why the sky looks blue today"
    whole = message(chat(api, ask(task)))["content"]
    r = chat(api, ask(task), stream=True, stream_options={"include_usage": True}, user=user)
    events = sse(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    pieces = [d["content"] for d in deltas if d.get("content")]
    assert len(pieces) >= 3 and "".join(pieces) == whole
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == recount(ask(task), None, {"content": whole})
    # Without include_usage no usage chunk; a tool call arrives in one delta chunk.
    calls = sse(chat(api, ask("search_corpus query: a"), tools=[SEARCH], stream=True))
    call_chunks = [json.loads(e) for e in calls[:-1]]
    assert all("usage" not in c and c["choices"] for c in call_chunks)
    with_calls = [c["choices"][0]["delta"] for c in call_chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert len(with_calls) == 1 and with_calls[0]["tool_calls"][0]["function"]["name"] == "search_corpus"
    assert call_chunks[-1]["choices"][0]["finish_reason"] == "tool_calls" and calls[-1] == "[DONE]"
    entry = api.get("/_standin/requests", params={"user": user}).json()["requests"][-1]
    assert entry["stream"] is True and entry["answer"] == {"content": whole}


def test_status_faults_are_scoped_to_their_user_and_spent(api: httpx.Client, user: str) -> None:
    other = f"{user}-other"
    made = fault(api, user=user, kind="status", status=429, count=2)
    assert made["id"] and made["remaining"] == 2
    assert chat(api, ask("hi"), user=other).status_code == 200  # another user is unaffected
    for _ in range(2):
        r = chat(api, ask("hi"), user=user)
        assert r.status_code == 429 and r.headers["retry-after"] == "1", r.text
        assert r.json()["error"]["code"] == "rate_limit_exceeded" and r.json()["error"]["type"]
    assert api.get("/_standin/faults", params={"user": user}).json()["faults"] == []  # spent faults disappear
    assert chat(api, ask("hi"), user=user).status_code == 200
    fault(api, user=user, kind="status", status=503, count=1, model="standin-small")
    fault(api, user=user, kind="status", status=500, count=1, role="triage")
    assert chat(api, ask("hi"), user=user).status_code == 200  # neither model nor role matches
    assert chat(api, ask("hi", "triage"), user=user).status_code == 500
    small = api.post("/v1/chat/completions", json={"model": "standin-small", "messages": ask("hi"), "user": user,
                                                   "stream": True})
    assert small.status_code == 503 and small.json()["error"]["code"] == "service_unavailable"
    log = api.get("/_standin/requests", params={"user": user}).json()["requests"]
    assert [(e["status"], e["fault"]) for e in log] == [
        (429, "status"), (429, "status"), (200, None), (200, None), (500, "status"), (503, "status")]


def test_latency_malformed_content_and_tool_call_faults(api: httpx.Client, user: str) -> None:
    fault(api, user=user, kind="latency", latency_ms=600, count=1)
    t0 = time.perf_counter()
    assert chat(api, ask("fast"), user=f"{user}-other").status_code == 200
    assert time.perf_counter() - t0 < 0.5
    t0 = time.perf_counter()
    assert message(chat(api, ask("slow"), user=user))["content"] == "assistant: slow"
    assert time.perf_counter() - t0 >= 0.6

    fault(api, user=user, kind="malformed_body", count=2)
    broken = chat(api, ask("x"), user=user)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    stream = sse(chat(api, ask("x"), user=user, stream=True))
    with pytest.raises(ValueError):
        json.loads(stream[0])

    fault(api, user=user, kind="content", content="exactly this", count=1)
    fault(api, user=user, kind="tool_call", tool_call={"name": "search_corpus", "arguments": "{not json"}, count=1)
    content = chat(api, ask("x"), user=user)
    assert message(content)["content"] == "exactly this"
    assert content.json()["usage"]["completion_tokens"] == count("exactly this")
    call = message(chat(api, ask("x"), user=user))["tool_calls"][0]
    assert call["function"] == {"name": "search_corpus", "arguments": "{not json"}
    assert message(chat(api, ask("x"), user=user))["content"] == "assistant: x"  # all spent


@pytest.mark.parametrize("spec", [
    {"kind": "status", "status": 503, "count": 1},  # no user
    {"user": "u", "kind": "status", "status": 404, "count": 1},
    {"user": "u", "kind": "status", "count": 1},
    {"user": "u", "kind": "latency", "latency_ms": 30001, "count": 1},
    {"user": "u", "kind": "latency", "latency_ms": 10, "status": 500, "count": 1},
    {"user": "u", "kind": "content", "content": "x", "count": 0},
    {"user": "u", "kind": "content", "content": "x", "count": 1001},
    {"user": "u", "kind": "explode", "count": 1},
    {"user": "u", "kind": "content", "content": "x", "count": 1, "model": "gpt-9"},
    {"user": "u", "kind": "malformed_body", "count": 1, "usr": "typo"},
])
def test_bad_faults_are_refused_with_the_reason(api: httpx.Client, spec: dict[str, Any]) -> None:
    r = api.post("/_standin/faults", json=spec)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("invalid"), r.text
    assert api.get("/_standin/faults", params={"user": "u"}).json()["faults"] == []


def test_request_log_filters_and_deletes_by_user(api: httpx.Client, user: str) -> None:
    other = f"{user}-other"
    tools = [SEARCH]
    chat(api, ask("first", "triage"), user=user, response_format={"type": "json_object"})
    chat(api, ask("mine"), user=other)
    chat(api, ask("search_corpus query: q"), user=user, tools=tools, tool_choice="auto")
    log = api.get("/_standin/requests", params={"user": user}).json()["requests"]
    assert [e["user"] for e in log] == [user, user] and log[0]["id"] < log[1]["id"]
    first, second = log
    assert first["role"] == "triage" and first["model"] == LARGE and first["stream"] is False
    assert first["messages"] == ask("first", "triage") and first["response_format"] == {"type": "json_object"}
    assert first["status"] == 200 and first["fault"] is None and first["duration_ms"] >= 0
    assert json.loads(first["answer"]["content"])["category"] == "general"
    assert first["usage"]["total_tokens"] > 0 and first["at"].endswith("+00:00")
    assert second["tools"] == ["search_corpus"] and second["tool_choice"] == "auto"
    assert second["answer"]["tool_calls"][0]["function"]["name"] == "search_corpus"
    since = api.get("/_standin/requests", params={"user": user, "since": first["id"]}).json()["requests"]
    assert [e["id"] for e in since] == [second["id"]]
    assert api.get("/_standin/requests", params={"user": user, "limit": 1}).json()["requests"] == [first]
    assert api.delete("/_standin/requests", params={"user": user}).status_code == 204
    assert api.get("/_standin/requests", params={"user": user}).json()["requests"] == []
    assert len(api.get("/_standin/requests", params={"user": other}).json()["requests"]) == 1
    api.delete("/_standin/requests", params={"user": other})
    assert api.delete("/_standin/requests").status_code == 400  # a user is required: no check clears all


def test_unknown_model_and_bad_bodies_are_openai_errors(api: httpx.Client, user: str) -> None:
    unknown = api.post("/v1/chat/completions", json={"model": "gpt-9", "messages": ask("x"), "user": user})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found", unknown.text
    bad = [
        ({"model": LARGE}, "messages"),
        ({"model": LARGE, "messages": []}, "messages"),
        ({"model": LARGE, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": LARGE, "messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"model": LARGE, "messages": ask("x"), "tools": [{"type": "function"}]}, "tools.0.function"),
        ({"model": LARGE, "messages": ask("x"), "tools": [OTHER],
          "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"model": LARGE, "messages": ask("x"), "temperature": 9}, "temperature"),
        ({"model": LARGE, "messages": "hello"}, "messages"),
        ([1, 2], "body"),
    ]
    for body, field in bad:
        r = api.post("/v1/chat/completions", json=body)
        assert r.status_code == 400, (body, r.text)
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and field in error["message"], (body, error)
    not_json = api.post("/v1/chat/completions", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]["message"]
    assert api.get("/_standin/requests", params={"user": user}).json()["requests"][0]["status"] == 404


def test_missing_key_exits_2_naming_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_STANDIN_")}
    r = subprocess.run([sys.executable, "-m", "standins.llm", "--port", "1"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "LLM_STANDIN_API_KEY" in r.stderr, r.stderr
