"""Fan-out latency of the WebSocket gateway: one admin broadcast reaching N open sockets.

    python bench/ws_fanout.py [--sizes 1,100,1000] [--rounds 5]

Starts its own stack (every service the two backend instances need) in a throwaway
project root, so a stack you may have running is not touched; it is stopped at the end, also
on Ctrl-C or a failure. For each size N it opens N sockets split evenly across the two backend
instances (users as needed: at most `max_connections_per_user` sockets each, half on each
instance), then per round an admin POSTs /api/admin/broadcast (to the instances in turn) and
each socket's latency is the time from just before the POST to its receipt of that
`system_notice`. One warm-up round per size is not counted.

All sockets live in this one process and event loop, so the receipt times include the
client's own work; at N=1000 on a small machine that is part of the tail. The open-file
soft limit is raised (up to the hard limit) before the stack starts, so the backends, which
inherit it, can hold their sockets too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import resource
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from own_stack import own_stack, services_for
from workbook.clients.platform.ws import ws_url
from workbook.stack.manager import Stack
from workbook.stack.state import stack_secret

INSTANCES = ("backend", "backend2")
PASSWORD = "correct horse battery"
OPEN_CONCURRENCY = 50
USER_CONCURRENCY = 6  # register + login hash passwords (argon2) in auth: a few at a time
ROUND_TIMEOUT_S = 10.0


def raise_nofile(sockets: int) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = sockets * 2 + 1024  # the client's sockets, plus what the stack's processes inherit and use
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return f"open-file limit raised from {soft} to {want} (hard {hard}); the stack inherits it"
    return f"open-file limit {soft} is enough (not raised)"


def random_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@dataclass
class Sock:
    conn: ClientConnection
    instance: str
    received: dict[str, float] = field(default_factory=dict)  # notice message -> perf_counter at receipt
    reader: asyncio.Task | None = None


@dataclass
class Bench:
    stack: Stack
    http: httpx.AsyncClient
    urls: dict[str, str]
    auth_url: str

    async def user(self) -> tuple[str, str]:
        """A new user, logged in from its own address (the per-IP login limit is not ours to hit)."""
        email, ip = f"wsbench-{uuid.uuid4().hex[:12]}@example.com", random_ip()
        r = await self.http.post(f"{self.auth_url}/auth/register", json={"email": email, "password": PASSWORD})
        r.raise_for_status()
        uid = r.json()["id"]
        return uid, await self.login(email, ip)

    async def login(self, email: str, ip: str) -> str:
        r = await self.http.post(f"{self.auth_url}/auth/login", json={"email": email, "password": PASSWORD},
                                 headers={"X-Forwarded-For": ip})
        r.raise_for_status()
        return r.json()["access_token"]

    async def admin(self) -> str:
        """A user made admin in auth's database (as `python -m app.auth set-role` does), then logged in."""
        email = f"wsbench-admin-{uuid.uuid4().hex[:12]}@example.com"
        r = await self.http.post(f"{self.auth_url}/auth/register", json={"email": email, "password": PASSWORD})
        r.raise_for_status()
        pg = self.stack.state().services["postgres"]
        conn = await asyncpg.connect(pg.url.rsplit("/", 1)[0] + "/auth",
                                     password=stack_secret(self.stack.paths, "postgres"))
        try:
            done = await conn.execute("UPDATE users SET role = 'admin' WHERE id = $1::uuid", r.json()["id"])
        finally:
            await conn.close()
        assert done == "UPDATE 1", done
        return await self.login(email, random_ip())

    async def open(self, instance: str, token: str) -> tuple[Sock, dict]:
        conn = await websockets.connect(ws_url(self.urls[instance]), additional_headers={
            "Authorization": f"Bearer {token}"}, max_size=None, open_timeout=30, ping_interval=None)
        first = json.loads(await asyncio.wait_for(conn.recv(), 30))
        assert first["type"] == "connection_established", first
        sock = Sock(conn, instance)
        sock.reader = asyncio.create_task(self.read(sock))
        return sock, first["payload"]

    async def read(self, sock: Sock) -> None:
        try:
            async for raw in sock.conn:
                if '"system_notice"' not in raw:
                    continue
                at = time.perf_counter()
                marker = json.loads(raw)["payload"]["message"]
                sock.received[marker] = at
        except websockets.ConnectionClosed:
            pass

    async def connections(self) -> dict[str, int]:
        out = {}
        for name, url in self.urls.items():
            r = await self.http.get(f"{url}/health/ready")
            out[name] = r.json()["checks"]["events"]["connections"]
        return out


def log_summary(stack: Stack) -> list[str]:
    """What the backend instances logged as errors (exception class names, most frequent first)."""
    out = []
    for name in INSTANCES:
        text = stack.logs(name, lines=200_000)
        kinds = Counter(m.group(1) for m in re.finditer(r"^([A-Za-z_.]*(?:Error|Exception)):", text, re.M))
        kinds.update(f"{m.group(1)} unavailable ({m.group(2)})"
                     for m in re.finditer(r"^dependency (\w+) unavailable: (\w+)", text, re.M))
        asgi = text.count("Exception in ASGI application")
        top = ", ".join(f"{k} x{v}" for k, v in kinds.most_common(3)) or "none"
        out.append(f"  {name}: {asgi} 'Exception in ASGI application'; errors: {top}")
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


async def run(stack: Stack, sizes: list[int], rounds: int) -> None:
    state = stack.state().services
    urls = {name: state[name].url for name in INSTANCES}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=50)) as http:
        b = Bench(stack, http, urls, state["auth"].url)
        admin_token = await b.admin()
        probe, hello = await b.open(INSTANCES[0], admin_token)
        limit = hello["limits"]["max_connections_per_user"]
        await probe.conn.close()
        probe.reader.cancel()

        t0 = time.perf_counter()
        need = math.ceil(max(sizes) / limit)
        gate = asyncio.Semaphore(USER_CONCURRENCY)

        async def one_user() -> str:
            async with gate:
                return (await b.user())[1]

        tokens = await asyncio.gather(*[one_user() for _ in range(need)])
        print(f"{need} users (at most {limit} sockets each) + 1 admin made in {time.perf_counter() - t0:.1f} s")

        rows = []
        for n in sizes:
            gate = asyncio.Semaphore(OPEN_CONCURRENCY)
            failures: list[str] = []

            async def open_one(i: int) -> Sock | None:
                # Socket i: user i // limit, instances alternating, so each user has half on each.
                async with gate:
                    try:
                        return (await b.open(INSTANCES[i % 2], tokens[i // limit]))[0]
                    except Exception as e:  # counted and shown, the bench carries on with what opened
                        failures.append(f"{type(e).__name__}: {e}"[:120])
                        return None

            t_open = time.perf_counter()
            socks = [s for s in await asyncio.gather(*[open_one(i) for i in range(n)]) if s is not None]
            open_s = time.perf_counter() - t_open

            lat: dict[str, list[float]] = {name: [] for name in INSTANCES}
            post_ms: list[float] = []
            sent = delivered = 0
            for r in range(rounds + 1):  # round 0 warms up
                marker = f"wsbench {n} round {r} {uuid.uuid4().hex[:8]}"
                target = urls[INSTANCES[r % 2]]
                start = time.perf_counter()
                resp = await http.post(f"{target}/api/admin/broadcast", json={"message": marker},
                                       headers={"Authorization": f"Bearer {admin_token}"})
                posted = time.perf_counter()
                resp.raise_for_status()
                # Until every socket still open has it (a socket the server closed never will).
                deadline = time.monotonic() + ROUND_TIMEOUT_S
                while time.monotonic() < deadline and not all(
                        marker in s.received or s.conn.close_code is not None for s in socks):
                    await asyncio.sleep(0.01)
                if r == 0:
                    continue
                post_ms.append((posted - start) * 1000)
                sent += len(socks)
                for s in socks:
                    if marker in s.received:
                        delivered += 1
                        lat[s.instance].append((s.received[marker] - start) * 1000)
                await asyncio.sleep(0.2)

            closed_early = Counter(f"{s.conn.close_code} {s.conn.close_reason or ''}".strip()
                                   for s in socks if s.conn.close_code is not None)
            t_close = time.perf_counter()
            await asyncio.gather(*[s.conn.close() for s in socks], return_exceptions=True)
            for s in socks:
                s.reader.cancel()
            close_s = time.perf_counter() - t_close
            # Let the instances unregister every socket before the next size reuses the users.
            deadline = time.monotonic() + 10
            while any((left := await b.connections()).values()) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            print(f"  N={n}: opened in {open_s:.1f} s, closed in {close_s:.1f} s; connections the instances "
                  f"still count {time.perf_counter() - t_close:.1f} s after the close began: {left}", flush=True)

            every = lat[INSTANCES[0]] + lat[INSTANCES[1]]
            rows.append((n, len(socks), open_s, close_s, sent, delivered, every, lat, post_ms, closed_early,
                         failures))

    print(f"\nbroadcast fan-out, {rounds} rounds per size (+1 warm-up), latency from just before the POST "
          f"to receipt (ms):")
    print(f"  {'N':>5} {'opened':>7} {'open s':>7} {'delivered/sent':>15} {'p50':>7} {'p99':>7} {'max':>7}"
          f"   {'p50 b1':>7} {'p50 b2':>7} {'POST p50':>8}")
    for n, opened, open_s, close_s, sent, delivered, every, lat, post_ms, closed_early, failures in rows:
        if every:
            b1 = statistics.median(lat[INSTANCES[0]]) if lat[INSTANCES[0]] else float("nan")
            b2 = statistics.median(lat[INSTANCES[1]]) if lat[INSTANCES[1]] else float("nan")
            print(f"  {n:>5} {opened:>7} {open_s:>7.3f} {f'{delivered}/{sent}':>15} {statistics.median(every):>7.1f}"
                  f" {pct(every, 0.99):>7.1f} {max(every):>7.1f}   {b1:>7.1f} {b2:>7.1f} "
                  f"{statistics.median(post_ms):>8.1f}")
        else:
            print(f"  {n:>5} {opened:>7} {open_s:>7.3f} {f'{delivered}/{sent}':>15}  (nothing delivered)")
        if failures:
            print(f"        {len(failures)} opens failed, e.g. {failures[0]}")
        if closed_early:
            print(f"        {sum(closed_early.values())} sockets closed by the server during the rounds "
                  f"(close code: count) {dict(closed_early)}")
    print("  (open s: wall time to open the N sockets, "
          f"{OPEN_CONCURRENCY} handshakes at a time; b1/b2: sockets on backend / backend2)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,100,1000", help="socket counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="measured broadcasts per size")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    print(raise_nofile(max(sizes)))
    began = time.perf_counter()
    with own_stack("wb-ws-bench-", services_for(list(INSTANCES))) as stack:
        print(f"{os.cpu_count()} cores")
        asyncio.run(run(stack, sizes, args.rounds))
        print("backend logs:", *log_summary(stack), sep="\n")
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
