"""Who is the bottleneck: the workbook's load path (Locust, as 09_load runs it) against `wrk` on
the same endpoints of one backend instance, `/health/live` and one authenticated read
(`GET /api/threads`).

    python bench/load_vs_wrk.py [--users 20] [--seconds 5]

Starts its own stack in a throwaway project root (a stack you may have running is not touched)
and stops it at the end. Locust runs exactly as in 09_load (`workbook.load.runner`: a master and
`load.workers` workers from params/local.yaml, within its `load` bounds, users logged in
beforehand); wrk runs with as many connections as Locust has users. If wrk's requests/s is far
above Locust's on the same endpoint, the load generator is the bottleneck and a notebook's
throughput floor measures Locust, not the platform. wrk is Debian's `wrk` package: where it is
missing the bench says so and prints Locust's numbers alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from own_stack import own_stack, services_for
from workbook.load.runner import Credential, LoadPlan, run
from workbook.params import load_params
from workbook.stack.manager import Stack

PASSWORD = "correct horse battery"
ENDPOINTS = {"live": "/health/live", "read": "/api/threads"}


async def logged_in(auth_url: str, n: int) -> list[Credential]:
    async with httpx.AsyncClient(timeout=30) as http:
        out = []
        for i in range(n):
            email = f"loadbench-{uuid.uuid4().hex[:12]}@example.com"
            r = await http.post(f"{auth_url}/auth/register", json={"email": email, "password": PASSWORD})
            r.raise_for_status()
            t = await http.post(f"{auth_url}/auth/login", json={"email": email, "password": PASSWORD},
                                headers={"X-Forwarded-For": f"10.1.{i // 250}.{i % 250 + 1}"})
            t.raise_for_status()
            out.append(Credential(id=r.json()["id"], ns="loadbench", access=t.json()["access_token"], email=email))
        return out


def wrk(url: str, connections: int, seconds: int, token: str | None) -> tuple[float, float, float, int] | None:
    """(requests/s, p50 ms, p99 ms, requests) of one wrk run; the token goes in a 0600 Lua script,
    never on wrk's command line."""
    if shutil.which("wrk") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "auth.lua"
        fd = os.open(script, os.O_CREAT | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else "")
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))

    def ms(q: str) -> float:
        value, unit = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\b", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, ms("50"), ms("99"), total


async def measure(stack: Stack, users: int, seconds: int) -> None:
    env = load_params("local")
    state = stack.state().services
    backend, auth_url = state["backend"].url, state["auth"].url
    creds = await logged_in(auth_url, users)
    rows = []
    for journey, path in ENDPOINTS.items():
        plan = LoadPlan(journey, users=users, requests=env.load.max_requests, run_time_s=seconds, host=backend,  # type: ignore[arg-type]
                        workers=env.load.workers)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = await run(env, plan, creds, Path(tmp))
        s = res.stats.iloc[0]
        rows.append((path, f"locust ({res.workers} workers)", int(s.requests), float(res.stats.rps.sum()),
                     float(s.p50_ms), float(s.p99_ms), res.total_failures, time.perf_counter() - t0))
        got = await asyncio.to_thread(wrk, backend + path, users, seconds, creds[0].access if journey == "read" else None)
        if got is None:
            rows.append((path, "wrk: not installed (apt-get install wrk)", 0, float("nan"), float("nan"), float("nan"), 0, 0.0))
        else:
            rps, p50, p99, total = got
            rows.append((path, "wrk (2 threads)", total, rps, p50, p99, 0, float(seconds)))
    print(f"\n{os.cpu_count()} cores; {users} users / connections; Locust bounded by params/local.yaml load "
          f"({env.load.max_requests} requests, {env.load.max_duration_s} s)")
    print(f"  {'endpoint':<14} {'tool':<28} {'requests':>8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'failed':>6} {'wall s':>6}")
    for path, tool, n, rps, p50, p99, failed, wall in rows:
        print(f"  {path:<14} {tool:<28} {n:>8} {rps:>8.0f} {p50:>7.1f} {p99:>7.1f} {failed:>6} {wall:>6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    began = time.perf_counter()
    with own_stack("wb-load-bench-", services_for(["backend"])) as stack:
        asyncio.run(measure(stack, args.users, args.seconds))
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
