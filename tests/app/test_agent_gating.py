"""Test agents (the scripted `probe`) exist only where `BACKEND_TEST_AGENTS` turns them on.

Off, which is the default, `probe` is an unknown agent like any other: not in `/health/agents`,
refused 422 `unknown_agent` over REST and with the same `error` over the WebSocket. On, it is
listed and a run of it completes. Each case is a real backend process of its own on the
session's stack; production refuses to start with test agents on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from auth_support import (BACKEND_DEPENDENCIES, DEPENDENCIES, AuthStack, backend_env, bearer, register_and_login,
                          spawn_backend)

from app.backend.startup import problems
from app.common.settings import BackendSettings
from workbook.clients.platform.ws import open_socket
from workbook.stack.auth import AuthService
from workbook.stack.manager import Stack

TIMEOUT_S = 10.0
STRONG = "Zq8#vLm2$Rt9!pWx4&Kd"


@pytest.fixture(scope="module")
def stack(auth_stack: AuthStack) -> Stack:
    """The session's auth stack plus what a backend needs besides auth (stopped at session end)."""
    stack = Stack(root=auth_stack.stack.paths.root, services=[*DEPENDENCIES, AuthService(), *BACKEND_DEPENDENCIES])
    stack.up()
    return stack


@pytest.fixture(scope="module")
def default_backend(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A backend started without BACKEND_TEST_AGENTS (the stack's own backends turn it on)."""
    env = backend_env(stack)
    del env["BACKEND_TEST_AGENTS"]
    with spawn_backend(env, tmp_path_factory.mktemp("default-backend") / "backend.log") as url:
        yield url


@pytest.fixture(scope="module")
def backend_with_test_agents(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = backend_env(stack, BACKEND_TEST_AGENTS="true")
    with spawn_backend(env, tmp_path_factory.mktemp("test-agents-backend") / "backend.log") as url:
        yield url


def agents(url: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{url}/health/agents", timeout=30)
    assert r.status_code == 200, r.text
    return {a["name"]: a for a in r.json()["agents"]}


def new_thread(api: httpx.Client, user: dict) -> str:
    r = api.post("/api/threads", json={"title": "test agents"}, headers=bearer(user["access_token"]))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_off_by_default_probe_is_not_listed(default_backend: str) -> None:
    listed = agents(default_backend)
    assert "probe" not in listed, sorted(listed)
    assert {"supervisor", "corpus_admin", "supply_researcher"} <= {n for n, a in listed.items() if a["entry"]}


def test_off_by_default_a_probe_run_is_refused_like_any_unknown_agent(client: httpx.Client,
                                                                      default_backend: str) -> None:
    user = register_and_login(client)
    with httpx.Client(base_url=default_backend, timeout=30) as api:
        thread = new_thread(api, user)
        refusals = {}
        for name in ("probe", "no_such_agent"):
            r = api.post(f"/api/threads/{thread}/runs", json={"agent": name}, headers=bearer(user["access_token"]))
            assert r.status_code == 422, r.text
            refusals[name] = r.json()
        assert refusals["probe"]["error"] == refusals["no_such_agent"]["error"] == "unknown_agent", refusals
        assert (refusals["probe"]["detail"].replace("'probe'", "'X'")
                == refusals["no_such_agent"]["detail"].replace("'no_such_agent'", "'X'")), refusals
        startable = refusals["probe"]["detail"].rsplit(": ", 1)[1].split(", ")
        assert "probe" not in startable and "supervisor" in startable, refusals["probe"]["detail"]
        plan = api.get("/api/users/me/plan", headers=bearer(user["access_token"])).json()
        assert plan["runs_today"] == 0, f"a refused run counted against the quota: {plan}"

    async def over_the_socket() -> dict[str, dict[str, Any]]:
        sock = await open_socket(default_backend, TIMEOUT_S, user["access_token"])
        try:
            errors = {}
            for name in ("probe", "no_such_agent"):
                await sock.send("start_agent", agent=name, thread_id=thread)
                errors[name] = (await sock.until("error"))[-1]["payload"]
            return errors
        finally:
            await sock.close()

    errors = asyncio.run(over_the_socket())
    assert errors["probe"]["code"] == errors["no_such_agent"]["code"] == "unknown_agent", errors
    assert errors["probe"]["detail"] == refusals["probe"]["detail"], errors


def test_on_probe_is_listed_and_a_run_of_it_completes(client: httpx.Client, backend_with_test_agents: str) -> None:
    probe = agents(backend_with_test_agents)["probe"]
    assert probe["entry"] and not probe["uses_model"], probe
    user = register_and_login(client)
    with httpx.Client(base_url=backend_with_test_agents, timeout=30) as api:
        thread = new_thread(api, user)
        r = api.post(f"/api/threads/{thread}/runs", json={"agent": "probe", "step_delay_ms": 0},
                     headers=bearer(user["access_token"]))
        assert r.status_code == 202, r.text
        run = r.json()
        deadline = time.monotonic() + TIMEOUT_S
        while run["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
            run = api.get(f"/api/runs/{run['id']}", headers=bearer(user["access_token"])).json()
        assert run["status"] == "completed", run
        steps = api.get(f"/api/runs/{run['id']}/steps", headers=bearer(user["access_token"])).json()["steps"]
        assert [s["kind"] for s in steps][-1] == "final_report", steps


def production(**kw: Any) -> BackendSettings:
    """A production configuration with nothing else to refuse."""
    return BackendSettings(env="production", database_password=STRONG, redis_password=STRONG,
                           service_client_secret=STRONG * 2, clickhouse_password=STRONG, llm_api_key=STRONG,
                           clickhouse_writer_password=STRONG, clickhouse_reader_password=STRONG,
                           auth_url="https://auth.example.com", issuer="https://auth.example.com",
                           llm_base_url="https://llm.example.com/v1", **kw)


def test_production_refuses_test_agents_and_staging_may_run_them() -> None:
    assert problems(production()) == []
    assert problems(production(test_agents=True)) == [
        "BACKEND_TEST_AGENTS must be off in production (the probe agent reports scripted results)"]
    staging = production(test_agents=True).model_copy(update={"env": "staging"})
    assert problems(staging) == []
