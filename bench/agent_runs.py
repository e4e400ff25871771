"""Agent run latency and throughput: supervisor runs end to end (triage, data in ClickHouse,
optimization, actions, streamed report) against the LLM stand-in.

    python bench/agent_runs.py [--concurrency 1,4,16] [--runs 32]

Starts its own stack in a throwaway project root (a stack you may have running is not
touched) and stops it at the end, also on Ctrl-C or a failure. Each of `max(concurrency)`
users has a thread, a socket subscribed to it (alternating between the two backend
instances) and a few workload events. At concurrency C, C users each start runs one after
another (REST, on the instance their socket is not on, so every event crosses Redis) until
`--runs` runs are done; per run it measures, from just before the POST, the arrival on the
socket of the first event and of `final_report`. runs/s is runs over the wall time of the
level. One warm-up run per user is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import time
import uuid
from datetime import datetime, timedelta

import clickhouse_connect
import httpx
import websockets

from own_stack import own_stack, services_for
from workbook.clients.platform.ws import ws_url
from workbook.stack.manager import Stack
from workbook.stack.state import stack_secret

INSTANCES = ("backend", "backend2")
PASSWORD = "correct horse battery"
REQUEST = "How can I cut the cost of my workload requests over the last 7 days?"
RUN_TIMEOUT_S = 30.0


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


class Client:
    """One user: a thread, a socket following it, and runs started over REST."""

    def __init__(self, http: httpx.AsyncClient, urls: dict[str, str], token: str, thread: str, home: int):
        self.http, self.urls, self.token, self.thread, self.home = http, urls, token, thread, home
        self.events: asyncio.Queue[tuple[float, dict]] = asyncio.Queue()
        self.sock: websockets.ClientConnection | None = None
        self.reader: asyncio.Task | None = None

    async def open(self) -> None:
        self.sock = await websockets.connect(ws_url(self.urls[INSTANCES[self.home]]), max_size=None,
                                             additional_headers={"Authorization": f"Bearer {self.token}"})
        json.loads(await self.sock.recv())  # connection_established
        await self.sock.send(json.dumps({"type": "subscribe_thread", "thread_id": self.thread}))
        while json.loads(await self.sock.recv())["type"] != "subscribed":
            pass
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.sock:
                self.events.put_nowait((time.perf_counter(), json.loads(raw)))
        except websockets.ConnectionClosed:
            pass

    async def run_once(self) -> tuple[float, float]:
        """(first event, final_report) in ms after the POST started."""
        t0 = time.perf_counter()
        r = await self.http.post(f"{self.urls[INSTANCES[1 - self.home]]}/api/threads/{self.thread}/runs",
                                 json={"input": REQUEST}, headers={"Authorization": f"Bearer {self.token}"})
        r.raise_for_status()
        run_id, first = r.json()["id"], None
        while True:
            at, event = await asyncio.wait_for(self.events.get(), RUN_TIMEOUT_S)
            if event.get("run_id") != run_id:
                continue
            first = first or at
            if event["type"] in ("final_report", "agent_error", "agent_stopped"):
                if event["type"] != "final_report":
                    raise RuntimeError(f"run {run_id} ended {event['type']}: {event['payload']}")
                return (first - t0) * 1000, (at - t0) * 1000

    async def close(self) -> None:
        if self.sock is not None:
            await self.sock.close()
        if self.reader is not None:
            await self.reader


async def make_clients(stack: Stack, http: httpx.AsyncClient, n: int) -> list[Client]:
    state = stack.state().services
    urls = {name: state[name].url for name in INSTANCES}
    ch = clickhouse_connect.get_client(dsn=state["clickhouse"].url, username="default",
                                       password=stack_secret(stack.paths, "clickhouse"))
    now = datetime.utcnow().replace(microsecond=0)
    clients = []
    for i in range(n):
        email = f"agentbench-{uuid.uuid4().hex[:12]}@example.com"
        r = await http.post(f"{state['auth'].url}/auth/register", json={"email": email, "password": PASSWORD})
        r.raise_for_status()
        user_id = r.json()["id"]
        ip = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
        r = await http.post(f"{state['auth'].url}/auth/login", json={"email": email, "password": PASSWORD},
                            headers={"X-Forwarded-For": ip})
        r.raise_for_status()
        token = r.json()["access_token"]
        r = await http.post(f"{urls['backend']}/api/threads", json={"title": "bench"},
                            headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        ch.insert("workload_events", [[user_id, now - timedelta(days=d), "chat", m, 10, 100_000 * (d + 1), 20_000, 90.0]
                                      for d, m in enumerate(["gpt-4o", "claude-3-5-haiku", "gpt-4o-mini"])],
                  column_names=["user_id", "ts", "workload", "model", "requests", "prompt_tokens",
                                "completion_tokens", "latency_ms"])
        client = Client(http, urls, token, r.json()["id"], i % 2)
        await client.open()
        clients.append(client)
    ch.close()
    return clients


async def measure(stack: Stack, levels: list[int], runs: int) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        t0 = time.perf_counter()
        clients = await make_clients(stack, http, max(levels))
        print(f"{len(clients)} users with a thread, a socket and workload events in {time.perf_counter() - t0:.1f} s")
        await asyncio.gather(*[c.run_once() for c in clients])  # warm-up, not counted
        print(f"{'concurrency':>11} {'runs':>5} {'first p50':>10} {'first p99':>10} {'done p50':>9} "
              f"{'done p99':>9} {'runs/s':>7}")
        try:
            for c in levels:
                first: list[float] = []
                done: list[float] = []
                left = runs

                async def worker(client: Client) -> None:
                    nonlocal left
                    while left > 0:
                        left -= 1
                        f, d = await client.run_once()
                        first.append(f)
                        done.append(d)

                began = time.perf_counter()
                await asyncio.gather(*[worker(cl) for cl in clients[:c]])
                wall = time.perf_counter() - began
                print(f"{c:>11} {len(done):>5} {statistics.median(first):>8.1f}ms {pct(first, 0.99):>8.1f}ms "
                      f"{statistics.median(done):>7.1f}ms {pct(done, 0.99):>7.1f}ms {len(done) / wall:>7.2f}")
        finally:
            await asyncio.gather(*[cl.close() for cl in clients])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", default="1,4,16", help="levels, comma-separated")
    parser.add_argument("--runs", type=int, default=32, help="measured runs per level")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    began = time.perf_counter()
    with own_stack("wb-agents-bench-", services_for(list(INSTANCES))) as stack:
        print(f"{os.cpu_count()} cores; every run: triage, data, optimization, actions, streamed report")
        asyncio.run(measure(stack, levels, args.runs))
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
