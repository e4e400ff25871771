"""Run Locust headless as its own processes and read back what it measured.

Locust's gevent must not share a process with the notebook's asyncio kernel, so a run is a
`locust` command (with `--processes N`: one master and N workers, Locust's distributed mode on
one machine) started from here, bounded three ways before it starts: users, requests and time
never exceed the env's `load` params, the env is not a production one, and every URL the plan
names is on one of the env's `allowed_hosts`. Credentials travel in a 0600 plan file in the
run's own directory, never on a command line, in an environment variable or in an output.

Locust writes its per-endpoint stats at its end (`--json-file`: requests, failures, response-time
histogram) and its history while it runs (`--csv`: requests/s per second); each simulated user
writes what it did by status and the ids it created
(`locustfile.py`). `LoadResult` holds both as DataFrames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import pandas as pd

from workbook.checks import using
from workbook.errors import ConfigError
from workbook.orphans import die_with_parent
from workbook.params import Env
from workbook.stack.manager import free_port

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = {"core": "CoreJourney", "writes": "WriteHeavy", "logins": "LoginStorm", "live": "HealthLive",
                "read": "ThreadsRead"}
Journey = Literal["core", "writes", "logins", "live", "read"]
# Locust's own start (imports, forking workers) and its stop, on top of the run time.
OVERHEAD_S = 20.0
# How often a Locust worker sends its stats to the master (Locust's WORKER_REPORT_INTERVAL).
WORKER_REPORT_S = 3.0


class LoadRefused(ConfigError):
    """A load run this env may not make (production, foreign host, past its bounds)."""


@dataclass(frozen=True)
class Credential:
    """One simulated user's identity: what the journey logs in with or sends as its bearer."""

    id: str
    ns: str
    access: str = ""
    email: str = ""
    password: str = ""
    ip: str = ""

    def __repr__(self) -> str:  # holds credentials: never in a repr
        return f"Credential(id={self.id!r})"


@dataclass(frozen=True)
class LoadPlan:
    journey: Journey
    users: int
    requests: int
    run_time_s: float
    host: str
    spawn_rate: float = 0.0  # 0: every user at once
    workers: int = 0  # 0: one process; N: a master and N worker processes
    wait_s: float = 0.0
    # Statuses the journey expects as answers under load (a 429 past a limit): counted, not failures.
    expected_refusals: tuple[int, ...] = ()
    backend_urls: tuple[str, ...] = ()
    auth_urls: tuple[str, ...] = ()
    messages_per_thread: int = 3

    def urls(self) -> list[str]:
        return [self.host, *self.backend_urls, *self.auth_urls]


def refuse_unless_allowed(env: Env, plan: LoadPlan) -> None:
    """Raise LoadRefused, naming why, for a run the env's params do not allow."""
    if env.is_production:
        raise LoadRefused(f"env '{env.name}' is a production env: no load runs")
    if not env.load.enabled:
        raise LoadRefused(f"env '{env.name}' has load.enabled false")
    bounds = env.load
    for what, value, limit in (("users", plan.users, bounds.max_concurrency), ("requests", plan.requests, bounds.max_requests),
                               ("run time (s)", plan.run_time_s, bounds.max_duration_s),
                               ("workers", plan.workers, bounds.workers)):
        if value > limit:
            raise LoadRefused(f"load plan asks for {value} {what}, params allow at most {limit}")
    for url in plan.urls():
        host = urlsplit(url).hostname or ""
        if not env.host_allowed(host):
            raise LoadRefused(f"load target {host or url!r} is not in env '{env.name}' allowed_hosts {env.allowed_hosts}")


async def hold_targets(env: Env, plan: LoadPlan) -> None:
    """Hold every stack service the plan's URLs reach, as a client's request does: Locust's
    requests leave from other processes, and a run spread over both backends lost half its
    writes (status 0) to another notebook's fault restarting one meanwhile."""
    targets = {urlsplit(url).netloc for url in plan.urls()}
    for name, svc in env.services.items():
        if svc.url and urlsplit(svc.url).netloc in targets:
            await using(name)


@dataclass
class LoadResult:
    plan: LoadPlan
    stats: pd.DataFrame  # one row per endpoint: requests, failures, rps, p50/p95/p99/max ms
    history: pd.DataFrame  # per second: users, requests/s, failures/s
    statuses: pd.DataFrame  # endpoint, status, count (from every simulated user)
    per_user: list[dict[str, Any]]  # what each simulated user did (statuses, ids it created)
    workers: int  # worker processes that reported to the master (0 in one process)
    wall_s: float
    exit_code: int | None
    output: str = field(repr=False)

    @property
    def total_requests(self) -> int:
        return int(self.stats["requests"].sum())

    @property
    def total_failures(self) -> int:
        return int(self.stats["failures"].sum())

    def count(self, endpoint: str, status: int) -> int:
        rows = self.statuses[(self.statuses.endpoint == endpoint) & (self.statuses.status == status)]
        return int(rows["count"].sum())

    def status_counts(self) -> dict[int, int]:
        return {int(k): int(v) for k, v in self.statuses.groupby("status")["count"].sum().items()}


def plan_body(plan: LoadPlan, credentials: Sequence[Credential], **where: str) -> dict[str, Any]:
    """What the locustfile reads: the plan, one credential per simulated user, and `where` (the
    run's directory here, or its id on a master elsewhere)."""
    per_user = max(1, plan.requests // max(1, len(credentials)))
    return {**where, "simulated_users": plan.users, "wait_s": plan.wait_s, "per_user_requests": per_user,
            "expected_refusals": list(plan.expected_refusals), "backend_urls": list(plan.backend_urls),
            "auth_urls": list(plan.auth_urls), "messages_per_thread": plan.messages_per_thread,
            "users": [{"id": c.id, "ns": c.ns, "access": c.access, "email": c.email, "password": c.password,
                       "ip": c.ip} for c in credentials]}


def _write_plan(plan: LoadPlan, credentials: Sequence[Credential], directory: Path) -> Path:
    body = plan_body(plan, credentials, dir=str(directory))
    path = directory / "plan.json"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f)
    return path


def command(plan: LoadPlan, csv_prefix: Path, bus_port: int) -> list[str]:
    """The `locust` command line of a plan (no credential on it). Its master and workers talk on
    `bus_port`, a free port of this run's own: on Locust's default (5557) two runs at once (two
    workbooks on one machine) shared workers, or the second found no master."""
    argv = ["locust", "-f", str(LOCUSTFILE), USER_CLASSES[plan.journey], "--headless",
            "--users", str(plan.users), "--spawn-rate", str(plan.spawn_rate or plan.users),
            "--run-time", f"{max(1, round(plan.run_time_s))}s", "--host", plan.host, "--csv", str(csv_prefix),
            "--json-file", str(csv_prefix), "--only-summary", "--stop-timeout", "2", "--loglevel", "INFO",
            "--exit-code-on-error", "0"]
    if plan.workers:
        argv += ["--processes", str(plan.workers), "--master-bind-host", "127.0.0.1",
                 "--master-bind-port", str(bus_port), "--master-host", "127.0.0.1", "--master-port", str(bus_port)]
    return argv


async def run(env: Env, plan: LoadPlan, credentials: Sequence[Credential], directory: Path) -> LoadResult:
    """Run `plan` with one credential per simulated user; `directory` is the check's own and
    holds the plan file, Locust's CSVs and each user's record until the check removes it."""
    refuse_unless_allowed(env, plan)
    await hold_targets(env, plan)
    if len(credentials) < plan.users:
        raise LoadRefused(f"{plan.users} simulated users need as many credentials, got {len(credentials)}")
    if env.load.master_host:
        return await on_master(env, plan, credentials, env.load.master_host)
    directory.mkdir(parents=True, exist_ok=True)
    plan_file = _write_plan(plan, credentials, directory)
    prefix = directory / "locust"
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *command(plan, prefix, free_port()), env={**os.environ, "WORKBOOK_LOAD_PLAN": str(plan_file)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True, preexec_fn=die_with_parent)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), plan.run_time_s + OVERHEAD_S)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise AssertionError(f"locust did not end within {plan.run_time_s + OVERHEAD_S:.0f} s: killed") from None
    finally:
        plan_file.unlink(missing_ok=True)
    wall = time.perf_counter() - t0
    text = out.decode(errors="replace")
    stats_json = Path(f"{prefix}.json")
    if not stats_json.is_file():
        raise AssertionError(f"locust exited {proc.returncode} without stats: {text[-800:]}")
    per_user = [json.loads(p.read_text()) for p in sorted(directory.glob("done-*.json"))]
    return LoadResult(plan, read_stats(stats_json), read_history(Path(f"{prefix}_stats_history.csv")),
                      statuses(per_user), per_user, workers_reported(text), wall, proc.returncode, text)


async def on_master(env: Env, plan: LoadPlan, credentials: Sequence[Credential], master: str) -> LoadResult:
    """Run `plan` on a Locust master the team runs (its workers anywhere), through its web API:
    the plan posted with the run as `workbook_plan` (never logged), the run read back from the
    workbook's `/workbook/run` route. The master is stopped, not quit, however the run ends."""
    base = master if "://" in master else f"http://{master}"
    run_id = uuid.uuid4().hex
    user_class = USER_CLASSES[plan.journey]
    async with httpx.AsyncClient(base_url=base, timeout=env.timeouts.request_s) as http:
        now = await _master_run(http, master)
        waited = time.monotonic() + OVERHEAD_S
        while now["workers"] < plan.workers:
            if time.monotonic() > waited:
                raise LoadRefused(f"Locust master at {master} has {now['workers']} workers connected, "
                                  f"params load.workers asks for {plan.workers}")
            await asyncio.sleep(0.5)
            now = await _master_run(http, master)
        if now["state"] not in ("ready", "stopped"):
            raise LoadRefused(f"Locust master at {master} is {now['state']}: another run is going on there")
        t0 = time.perf_counter()
        answer = (await http.post("/swarm", data={
            "user_count": plan.users, "spawn_rate": plan.spawn_rate or plan.users, "host": plan.host,
            "run_time": f"{max(1, round(plan.run_time_s))}s", "user_classes": user_class,
            "workbook_plan": json.dumps(plan_body(plan, credentials, run=run_id))})).json()
        if not answer.get("success"):
            raise AssertionError(f"Locust master at {master} refused the run: {answer.get('message')}")
        try:
            got = await _until_done(http, master, run_id, user_class, plan.run_time_s + OVERHEAD_S)
        except BaseException:
            with contextlib.suppress(httpx.HTTPError):
                await http.get("/stop")
            raise
        wall = time.perf_counter() - t0
    return LoadResult(plan, stats_frame(got["stats"]), history_frame(got["history"]), statuses(got["records"]),
                      got["records"], got["workers"], wall, None, "")


async def _master_run(http: httpx.AsyncClient, master: str) -> dict[str, Any]:
    try:
        resp = await http.get("/workbook/run")
    except httpx.HTTPError as e:
        raise LoadRefused(f"Locust master at {master} did not answer: {type(e).__name__} {e}") from None
    if resp.status_code == 404:
        raise LoadRefused(f"Locust master at {master} has no /workbook/run: start it with -f {LOCUSTFILE.name} "
                          "from lib/workbook/load")
    resp.raise_for_status()
    return resp.json()


async def _until_done(http: httpx.AsyncClient, master: str, run_id: str, user_class: str,
                      within_s: float) -> dict[str, Any]:
    """The run once the master stopped it and every user that took a slot sent its record; a
    run that did not end by itself within `within_s` fails."""
    deadline = time.monotonic() + within_s
    while True:
        await asyncio.sleep(0.5)
        got = await _master_run(http, master)
        if got["run"] == run_id and got["classes"] != [user_class]:
            raise AssertionError(f"Locust master at {master} runs {got['classes']}, not {user_class}: "
                                 "start it with --class-picker")
        if got["run"] == run_id and got["state"] == "stopped" and len(got["records"]) >= got["claimed"]:
            if got["finished"] < got["claimed"]:
                # stopped by its run time: workers report their last stats on their next tick
                await asyncio.sleep(WORKER_REPORT_S)
                got = await _master_run(http, master)
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"the run on Locust master {master} did not end within {within_s:.0f} s: stopped")


def percentile(times: dict[str, int], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of Locust's response-time histogram (ms -> count)."""
    ordered = sorted((float(ms), n) for ms, n in times.items())
    total = sum(n for _, n in ordered)
    if not total:
        return float("nan")
    rank, seen = max(1, math.ceil(q * total)), 0
    for ms, n in ordered:
        seen += n
        if seen >= rank:
            return ms
    return ordered[-1][0]


def read_stats(path: Path) -> pd.DataFrame:
    """Per endpoint, from Locust's final JSON stats (written at its shutdown; its stats CSV is
    rewritten once a second while it runs and misses a run's last second)."""
    return stats_frame(json.loads(path.read_text()))


def stats_frame(entries: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per endpoint, from Locust's serialized stats entries."""
    rows = []
    for e in entries:
        span = max(e["last_request_timestamp"] - e["start_time"], 1e-3) if e["num_requests"] else 1.0
        times = e["response_times"]
        rows.append({"endpoint": f"{e['method']} {e['name']}", "requests": e["num_requests"],
                     "failures": e["num_failures"], "rps": e["num_requests"] / span,
                     "p50_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95),
                     "p99_ms": percentile(times, 0.99), "max_ms": e["max_response_time"] or 0.0})
    return pd.DataFrame(rows, columns=["endpoint", "requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms"])


def read_history(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    raw = raw[raw["Name"] == "Aggregated"]
    start = raw["Timestamp"].min() if len(raw) else 0
    return pd.DataFrame({"second": raw["Timestamp"] - start, "users": raw["User Count"],
                         "rps": raw["Requests/s"], "failures_per_s": raw["Failures/s"]}).reset_index(drop=True)


def history_frame(history: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per second, from a master's chart history (each value is [timestamp, value])."""
    return pd.DataFrame({"second": range(len(history)), "users": [h["user_count"][1] for h in history],
                         "rps": [h["current_rps"][1] for h in history],
                         "failures_per_s": [h["current_fail_per_sec"][1] for h in history]})


def statuses(per_user: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows: dict[tuple[str, int], int] = {}
    for u in per_user:
        for key, n in u["statuses"].items():
            endpoint, _, status = key.rpartition(" ")  # "GET /api/threads 200"
            rows[(endpoint, int(status))] = rows.get((endpoint, int(status)), 0) + n
    return pd.DataFrame([{"endpoint": e, "status": s, "count": n} for (e, s), n in sorted(rows.items())],
                        columns=["endpoint", "status", "count"])


def workers_reported(output: str) -> int:
    """Worker processes the master saw connect (Locust logs each one)."""
    return len(set(re.findall(r"(\S+) \(index \d+\) reported as ready\.", output)))
