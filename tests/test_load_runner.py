"""The load runner against a real HTTP server of the test's own: Locust runs as its own processes
(a master and two workers), every request counted once, each simulated user within its quota, and
runs the env may not make refused before anything starts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from workbook.load.runner import LOCUSTFILE, Credential, LoadPlan, LoadRefused, command, refuse_unless_allowed, run
from workbook.params import load_params
from workbook.stack.manager import free_port


class Live(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        Live.seen.append(self.path)
        self.send_response(200 if self.path == "/health/live" else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Live)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Live.seen.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def creds(n: int) -> list[Credential]:
    return [Credential(id=f"u{i}", ns="t", access=f"secret-token-{i}") for i in range(n)]


def test_distributed_run_counts_every_request_once(server: str, tmp_path: Path) -> None:
    env = load_params("local")
    plan = LoadPlan("live", users=4, requests=40, run_time_s=10, host=server, workers=2)
    result = asyncio.run(run(env, plan, creds(4), tmp_path))
    assert result.workers == 2, result.output[-500:]
    assert result.total_requests == len(Live.seen) == 40, (result.total_requests, len(Live.seen))
    assert sorted(u["slot"] for u in result.per_user) == [0, 1, 2, 3]
    assert all(sum(u["statuses"].values()) == 10 for u in result.per_user), result.per_user
    assert result.status_counts() == {200: 40} and result.total_failures == 0
    assert result.wall_s < plan.run_time_s, "the run idled after every user used its quota"
    assert not (tmp_path / "plan.json").exists(), "the plan file (credentials) outlived the run"


def test_refusals_and_failures_counted_by_status(server: str, tmp_path: Path) -> None:
    plan = LoadPlan("read", users=2, requests=6, run_time_s=10, host=server, expected_refusals=(503,))
    result = asyncio.run(run(load_params("local"), plan, creds(2), tmp_path))
    assert result.status_counts() == {503: 6} and result.total_failures == 0, result.statuses
    plan = LoadPlan("read", users=2, requests=6, run_time_s=10, host=server)
    result = asyncio.run(run(load_params("local"), plan, creds(2), tmp_path / "again"))
    assert result.total_failures == 6


def test_no_credential_on_the_command_line(tmp_path: Path) -> None:
    argv = command(LoadPlan("read", users=2, requests=6, run_time_s=3, host="http://127.0.0.1:1"), tmp_path / "x", 1)
    assert not any("secret-token" in a for a in argv) and "--headless" in argv


@pytest.mark.parametrize("change, why", [({"host": "http://staging.example.com"}, "allowed_hosts"),
                                         ({"users": 10_000}, "users"), ({"requests": 10**9}, "requests"),
                                         ({"run_time_s": 10**6}, "run time"), ({"workers": 99}, "workers")])
def test_plans_past_the_env_refused(change: dict, why: str) -> None:
    plan = LoadPlan(**{"journey": "live", "users": 1, "requests": 1, "run_time_s": 1, "host": "http://127.0.0.1:1", **change})
    with pytest.raises(LoadRefused, match=why):
        refuse_unless_allowed(load_params("local"), plan)


def test_production_env_refused() -> None:
    prod = load_params("local").model_copy(update={"name": "production"})
    with pytest.raises(LoadRefused, match="production"):
        refuse_unless_allowed(prod, LoadPlan("live", users=1, requests=1, run_time_s=1, host="http://127.0.0.1:1"))


@pytest.fixture
def master(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Locust master as a team runs one (web UI, class picker) with a worker process of two
    workers that fetched the locustfile from it; its output file for the secret check."""
    web, bus = free_port(), free_port()
    out = tmp_path / "locust.log"
    common = {"stdout": out.open("w"), "stderr": subprocess.STDOUT, "start_new_session": True}
    procs = [subprocess.Popen(["locust", "-f", str(LOCUSTFILE), "--master", "--class-picker", "--web-host", "127.0.0.1",
                               "--web-port", str(web), "--master-bind-host", "127.0.0.1", "--master-bind-port", str(bus)],
                              **common)]  # type: ignore[call-overload]
    procs.append(subprocess.Popen(["locust", "-f", "-", "--worker", "--master-host", "127.0.0.1", "--master-port",
                                   str(bus), "--processes", "2"], **common))  # type: ignore[call-overload]
    try:
        deadline = time.monotonic() + 30
        while True:  # the master's web UI answers once Locust imported everything
            try:
                httpx.get(f"http://127.0.0.1:{web}/workbook/run", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, out.read_text()[-2000:]
                time.sleep(0.2)
        yield f"127.0.0.1:{web}", out
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=20)


def test_runs_on_a_master_the_team_runs(server: str, master: tuple[str, Path]) -> None:
    host, log = master
    env = load_params("local")
    env = env.model_copy(update={"load": env.load.model_copy(update={"master_host": host, "workers": 2})})
    for run_no in range(2):  # the master serves one run after another, each counted from zero
        Live.seen.clear()
        plan = LoadPlan("live", users=4, requests=40, run_time_s=10, host=server, workers=2)
        result = asyncio.run(run(env, plan, creds(4), Path("/nonexistent")))
        assert result.workers == 2
        assert result.total_requests == len(Live.seen) == 40, (run_no, result.total_requests, len(Live.seen))
        assert sorted(u["slot"] for u in result.per_user) == [0, 1, 2, 3], result.per_user
        assert all(sum(u["statuses"].values()) == 10 for u in result.per_user), result.per_user
        assert result.status_counts() == {200: 40} and result.total_failures == 0
        assert result.wall_s < plan.run_time_s, "the run idled after every user used its quota"
    assert "secret-token" not in log.read_text(), "a credential reached the master's or a worker's log"


def test_master_without_enough_workers_refused(server: str, master: tuple[str, Path]) -> None:
    env = load_params("local")
    env = env.model_copy(update={"load": env.load.model_copy(update={"master_host": master[0], "workers": 3})})
    with pytest.raises(LoadRefused, match="2 workers connected, params load.workers asks for 3"):
        asyncio.run(run(env, LoadPlan("live", users=1, requests=1, run_time_s=1, host=server, workers=3), creds(1),
                        Path("/nonexistent")))


def test_unreachable_master_named() -> None:
    env = load_params("local")
    env = env.model_copy(update={"load": env.load.model_copy(update={"master_host": f"127.0.0.1:{free_port()}"})})
    with pytest.raises(LoadRefused, match="Locust master at 127.0.0.1:[0-9]+ did not answer"):
        asyncio.run(run(env, LoadPlan("live", users=1, requests=1, run_time_s=1, host="http://127.0.0.1:1"), creds(1),
                        Path("/nonexistent")))


def test_two_distributed_runs_at_once_keep_their_own_workers(server: str, tmp_path: Path) -> None:
    """Two workbooks on one machine: each run's master and workers on a port of its own."""
    env = load_params("local")
    plan = LoadPlan("live", users=4, requests=40, run_time_s=15, host=server, workers=2)

    async def both() -> list:
        return list(await asyncio.gather(run(env, plan, creds(4), tmp_path / "a"), run(env, plan, creds(4), tmp_path / "b")))

    results = asyncio.run(both())
    assert [(r.workers, r.total_requests) for r in results] == [(2, 40), (2, 40)], [r.output[-300:] for r in results]
    assert len(Live.seen) == 80
