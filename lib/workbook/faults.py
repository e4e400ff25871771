"""Controlled faults in the embedded stack: kill a service, bring it back, or run a second
instance of a platform service with a changed configuration and read how it fails.

Only where the workbook owns the processes: `stack: embedded` and `destructive: true`; in any
other env the calling check is skipped with the reason (a compose stack or staging has no
processes here to kill).
Everything here is bounded in time and undoes itself: `service_down` restarts the service
on leaving the block (also when the check failed), `second_instance` kills what it started.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from workbook.checks import skip
from workbook.env import Env, project_root
from workbook.stack.manager import Stack, free_port
from workbook.stack.state import stack_secret


def _stack(env: Env, what: str) -> Stack:
    if env.stack != "embedded" or not env.allows("destructive"):
        skip(f"env '{env.name}': {what} needs the embedded stack with destructive: true")
    return Stack(project_root())


async def kill(env: Env, service: str) -> None:
    """SIGKILL one service of the embedded stack (a crash, not a shutdown)."""
    await asyncio.to_thread(_stack(env, f"killing {service}").kill, service)


async def restart(env: Env, service: str) -> float:
    """Start a stopped (or running) service again on its port; returns seconds until it answered."""
    t0 = time.perf_counter()
    await asyncio.to_thread(_stack(env, f"restarting {service}").restart, service)
    return time.perf_counter() - t0


@asynccontextmanager
async def service_down(env: Env, service: str) -> AsyncIterator[None]:
    """`async with service_down(wb, "auth"):` the service is dead inside the block, back after it."""
    await kill(env, service)
    try:
        yield
    finally:
        await restart(env, service)


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
        """The settings a refusing service named: its `  - NAME: why` lines."""
        return set(re.findall(r"^\s+- ([A-Z][A-Z0-9_]*(?:\[[^\]]*\])?(?:\.\w+)?)", self.output, re.M))


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "<secret>")
    return text


class Instance:
    """A second process of a platform service, started with the stack's configuration plus overrides."""

    def __init__(self, env: Env, service: str, overrides: dict[str, str | None]):
        self.stack = _stack(env, f"a second {service} instance")
        self.spec = self.stack.spec(service)
        self.port = free_port()
        self.url = self.spec.url(self.port)
        launch = self.spec.prepare(self.stack.paths, self.port, stack_secret(self.stack.paths, service))
        self.argv = launch.argv
        self.env = {**os.environ, **launch.env}
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
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
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
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
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


@asynccontextmanager
async def second_instance(env: Env, service: str, overrides: dict[str, str | None]) -> AsyncIterator[Instance]:
    """A second `service` process on a free port with `overrides` applied to its environment
    (None removes a variable); killed on leaving the block."""
    # prepare() runs its own event loop (it may create the service's database): not on this one.
    inst = await asyncio.to_thread(Instance, env, service, overrides)
    await inst.start()
    try:
        yield inst
    finally:
        await inst.stop()
