"""Controlled faults in the embedded stack: kill a service, bring it back, or run a second
instance of a platform service with a changed configuration and read how it fails.

Only where the workbook owns the processes: `stack: embedded` and `destructive: true`; in any
other env the calling check is skipped with the reason (a compose stack or staging has no
processes here to kill).
Everything here is bounded in time and undoes itself: `service_down` restarts the service
on leaving the block (also when the check failed), `second_instance` kills what it started
and drops the scratch database it was given.

A second instance shares the stack's database, Redis and keys unless told otherwise, so it
may not change a setting the service writes into shared state at startup (auth seeds its
service clients and its audit role's password): that needs `own_database=True`, which gives
the instance a fresh database (and, for auth, its own audit role).

To see a configuration refused, `config_check` (or `refusal(..., check_config=True)`) runs the
service's `--check-config`: the validation a start runs, on the same code path, exiting as a
refused start does but writing nothing, so it needs no scratch database whatever it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx

from workbook import checks
from workbook.checks import skip
from workbook.clients import tls
from workbook.clients.scope import Check
from workbook.errors import WorkbookError
from workbook.orphans import die_with_parent
from workbook.params import Env
from workbook.paths import project_root
from workbook.settle import wait_settled
from workbook.stack.manager import Stack, free_port
from workbook.stack.postgres import ensure_database
from workbook.stack.redis import (DATA_SERVERS, sentinel_primary, wait_primary_seen_up, wait_replica_in_sync,
                                  wait_replica_promotable)
from workbook.stack.state import stack_secret


def _stack(env: Env, what: str) -> Stack:
    if env.stack != "embedded" or not env.allows("destructive"):
        skip(f"env '{env.name}': {what} needs the embedded stack with destructive: true")
    return Stack(project_root())


async def kill(env: Env, service: str) -> None:
    """SIGKILL one service of the embedded stack (a crash, not a shutdown). From here until
    `restart`, no check of another notebook uses this service or what depends on it
    (workbook.stack.locks); this waits for those in flight to end. `redis` is the platform's
    Redis as a whole: every data server (the primary and its replica) is killed, so Redis is away
    and no failover brings it back; `kill_process` kills one server (a failover check's primary)."""
    stack = _stack(env, f"killing {service}")
    await _exclusive(service)
    state = stack.state()
    for name in DATA_SERVERS if service == "redis" else (service,):
        if name == service or (name in state.services and state.services[name].process() is not None):
            await asyncio.to_thread(stack.kill, name)


async def kill_process(env: Env, service: str) -> None:
    """SIGKILL exactly the stack process `service` (`kill` without its meaning of `redis`: the
    `redis` server alone, as a failover check kills whichever data server is the primary)."""
    stack = _stack(env, f"killing {service}")
    await _exclusive(service)
    if service in DATA_SERVERS:  # a failover may follow: the other server must be one Sentinel can promote
        for other in DATA_SERVERS:
            if other != service:
                await asyncio.to_thread(wait_replica_promotable, stack.paths, other)
    await asyncio.to_thread(stack.kill, service)


def _down_data_servers(stack: Stack) -> list[str]:
    """The Redis data servers the stack recorded that are not running (what a `redis` kill took),
    the one Sentinel names the primary first: it comes back the primary, the other its replica."""
    state = stack.state()
    down = [n for n in DATA_SERVERS if n in state.services and state.services[n].process() is None]
    named = sentinel_primary(stack.paths)
    return sorted(down, key=lambda n: int(state.services[n].url.rsplit(":", 1)[1].split("/")[0]) != named)


async def restart(env: Env, service: str) -> float:
    """Start a stopped (or running) service again on its port; returns seconds until it answered.
    Other notebooks' checks go on once it answers."""
    t0 = time.perf_counter()
    held = checks.locks()
    stack = _stack(env, f"restarting {service}")
    try:
        down = await asyncio.to_thread(_down_data_servers, stack) if service == "redis" else []
        for i, name in enumerate(down or [service]):
            if i:  # the primary first, seen up by every Sentinel before its replica returns
                await asyncio.to_thread(wait_primary_seen_up, stack.paths)
            await asyncio.to_thread(stack.restart, name)
            if name in DATA_SERVERS:
                await asyncio.to_thread(wait_replica_in_sync, stack.paths, name)
        if held is not None:
            # What the restart brings back, not what an enclosing block keeps down on purpose.
            await asyncio.to_thread(wait_settled, env, held.breaks([service]))
    finally:
        if held is not None:
            held.shared_again()
    return time.perf_counter() - t0


async def _exclusive(*services: str) -> None:
    if (held := checks.locks()) is not None:
        await asyncio.to_thread(held.exclusive, services)


@asynccontextmanager
async def service_down(env: Env, service: str) -> AsyncIterator[None]:
    """`async with service_down(wb.env, "auth"):` the service is dead inside the block, back after it."""
    try:
        await kill(env, service)
        yield
    finally:
        await restart(env, service)


@asynccontextmanager
async def process_down(env: Env, service: str) -> AsyncIterator[None]:
    """`service_down` for exactly one process (`kill_process`): `redis` here is that server alone."""
    try:
        await kill_process(env, service)
        yield
    finally:
        await restart(env, service)


@asynccontextmanager
async def alone(env: Env, *services: str) -> AsyncIterator[None]:
    """`async with alone(wb.env, "auth"):` no check of another notebook uses these services (or
    what depends on them) inside the block, across any kill/restart in it: for checks that read
    state every client shares (a breaker's half-open trial call) after a restart, which other
    notebooks' traffic would otherwise consume. A check that knows it from the start says
    `check(..., alone=(...))` instead."""
    _stack(env, "holding services alone")
    await _exclusive(*services)
    held = checks.locks()
    try:
        yield
    except BaseException:
        if held is not None:  # hand them back settled still, but say why the block failed
            with contextlib.suppress(WorkbookError):
                await asyncio.to_thread(wait_settled, env, held.exclusive_now)
        raise
    else:
        if held is not None:
            await asyncio.to_thread(wait_settled, env, held.exclusive_now)
    finally:
        if held is not None:
            held.shared_again()


@asynccontextmanager
async def paused(env: Env, service: str) -> AsyncIterator[None]:
    """`async with paused(wb.env, "backend"):` the service's process is stopped (SIGSTOP: alive,
    holding its sockets and its beliefs, answering nothing) inside the block and continued after
    it, as a long GC pause or a frozen VM would: what it does when it wakes is the check."""
    stack = _stack(env, f"pausing {service}")
    await _exclusive(service)
    proc = stack.state().services[service].process()
    if proc is None:
        raise WorkbookError(f"{service} is not running")
    held = checks.locks()
    try:
        proc.suspend()
        yield
    finally:
        proc.resume()
        if held is not None:
            await asyncio.to_thread(wait_settled, env, held.breaks([service]))
            held.shared_again()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read, closed): an unreachable dependency."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Exited:
    code: int | None  # None: still running when the time ran out (then it was killed)
    output: str
    seconds: float

    @property
    def problems(self) -> set[str]:
        """The variables a refusing service named: its `  - NAME...: why` lines."""
        return set(re.findall(r"^\s+- ([A-Z][A-Z0-9_]*)", self.output, re.M))


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "<secret>")
    return text


class Instance:
    """A second process of a platform service, started with the stack's configuration plus overrides."""

    def __init__(self, env: Env, service: str, overrides: dict[str, str | None], own_database: bool = False,
                 check_config: bool = False):
        self.stack = _stack(env, f"a second {service} instance")
        self.spec = self.stack.spec(service)
        self.port = free_port()
        self.url = self.spec.url(self.port)
        launch = self.spec.prepare(self.stack.paths, self.port, stack_secret(self.stack.paths, service))
        shared = [k for k in self.spec.shared_state_env if k in overrides and overrides[k] != launch.env.get(k)]
        if shared and not own_database and not check_config:
            raise ValueError(f"{', '.join(shared)}: {service} writes these into shared state at startup; "
                             "pass own_database=True so a second instance cannot change the stack's")
        # The start's own command line: --check-config stops it after validating, before it writes or serves.
        self.argv = [*launch.argv, "--check-config"] if check_config else launch.argv
        self.env = {**os.environ, **launch.env, **self.spec.second_instance_env(self.port)}
        self.scratch: str | None = None
        if own_database and self.spec.database_env:
            self.scratch = f"scratch_{service}_{self.port}"
            pg = self.stack.state().services["postgres"]
            ensure_database(pg.url, stack_secret(self.stack.paths, "postgres"), self.scratch)
            base = launch.env[self.spec.database_env].rsplit("/", 1)[0]
            self.env.update({self.spec.database_env: f"{base}/{self.scratch}", **self.spec.scratch_env(self.scratch)})
        for key, value in overrides.items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self._secrets = [v for k, v in launch.env.items() if re.search("PASSWORD|SECRET", k) and len(v) >= 8]
        self.proc: asyncio.subprocess.Process | None = None
        self._out = bytearray()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.argv[-1] != "--check-config":
            # It talks to the stack's services as the stack's own instance does: another notebook's
            # fault must not take them away mid-check (a Redis restart freed the pool of one that
            # 07's exhausted-pool check relies on being held).
            for dep in self.spec.depends_on:
                await checks.using(dep)
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        # Drained all the time, so a chatty instance never blocks on a full pipe.
        assert self.proc is not None and self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self._out += chunk

    @property
    def output(self) -> str:
        """What the instance printed so far, with the stack's secrets replaced by `<secret>`."""
        return _scrub(self._out.decode(errors="replace"), self._secrets)

    async def wait_exit(self, timeout_s: float) -> Exited:
        """Wait for the process to end by itself; kill it if it is still running after `timeout_s`."""
        assert self.proc is not None and self._reader is not None
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
            code: int | None = self.proc.returncode
        except TimeoutError:
            await self.stop()
            code = None
        await self._reader
        return Exited(code, self.output, time.perf_counter() - t0)

    async def wait_answering(self, path: str, timeout_s: float) -> httpx.Response:
        """The first HTTP answer (any status) on `path`, polling until `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2, verify=tls.context()) as client:
            while True:
                if self.proc is not None and self.proc.returncode is not None:
                    raise AssertionError(f"{self.spec.name} instance exited with {self.proc.returncode}: "
                                         f"{self.output[-500:]}")
                try:
                    return await client.get(path)
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{self.spec.name} instance did not answer within {timeout_s}s: "
                                             f"{self.output[-500:]}") from None
                    await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def drop_scratch(self) -> None:
        if self.scratch is None:
            return
        pg = self.stack.state().services["postgres"]
        conn = await asyncpg.connect(pg.url, password=stack_secret(self.stack.paths, "postgres"), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.scratch}" WITH (FORCE)')
            for sql in self.spec.scratch_cleanup(self.scratch):
                await conn.execute(sql)
        finally:
            await conn.close()


async def _instance(env: Env, service: str, overrides: dict[str, str | None], own_database: bool = False,
                    check_config: bool = False) -> Instance:
    """An `Instance`, made while holding what its service depends on: making one may create the
    service's database, which another notebook's PostgreSQL restart must not meet halfway."""
    for dep in _stack(env, f"a second {service} instance").spec(service).depends_on:
        await checks.using(dep)
    # Its constructor runs its own event loop (it may create the database): not on this one.
    return await asyncio.to_thread(Instance, env, service, overrides, own_database, check_config)


@asynccontextmanager
async def second_instance(env: Env, service: str, overrides: dict[str, str | None],
                          own_database: bool = False) -> AsyncIterator[Instance]:
    """A second `service` process on a free port with `overrides` applied to its environment
    (None removes a variable), on a scratch database if `own_database`; killed (and the
    scratch database dropped) on leaving the block."""
    inst = await _instance(env, service, overrides, own_database)
    try:
        await inst.start()
        yield inst
    finally:
        await inst.stop()
        await inst.drop_scratch()


async def started_instance(env: Env, service: str, overrides: dict[str, str | None], scope: Check,
                           own_database: bool = False) -> Instance:
    """`second_instance` for longer than one block: started now, stopped (and its scratch database
    dropped) when `scope` ends - a check, or a notebook's shared fixture (`wb.shared`), so one
    instance can serve every check of a section."""
    inst = await _instance(env, service, overrides, own_database)
    scope.defer(inst.drop_scratch)
    scope.defer(inst.stop)
    await inst.start()
    return inst


async def config_check(env: Env, service: str, overrides: dict[str, str | None]) -> Exited:
    """`python -m app.<service> --check-config` with the stack's configuration plus `overrides`:
    how the validation a start runs ends (2 naming each problem, 0 if it would start), in the time
    of the service's import, with no port, database or key touched."""
    inst = await _instance(env, service, overrides, check_config=True)
    try:
        await inst.start()
        return await inst.wait_exit(env.timeouts.startup_s)
    finally:
        await inst.stop()


async def refusal(env: Env, service: str, overrides: dict[str, str | None], own_database: bool = False,
                  check_config: bool = False) -> Exited:
    """Start a second instance that should refuse to start; how it exited (killed, code None,
    if it was still running after `timeouts.startup_s`). With `check_config`, only its
    validation runs (`config_check`): cheaper, but only a real start shows that the service
    validates before it serves, so each kind of refusal keeps at least one real start."""
    if check_config:
        return await config_check(env, service, overrides)
    async with second_instance(env, service, overrides, own_database) as inst:
        return await inst.wait_exit(env.timeouts.startup_s)
