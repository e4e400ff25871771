"""Start, reuse, stop and inspect the embedded stack's processes.

`up` starts what is not running (independent services in parallel, dependents after what
they depend on), waits until each answers a real request, and records it; a second `up`,
also from another process at the same time, finds the services answering and reuses them.
`down`, `kill` and `restart` only ever signal processes recorded in the state file whose
start time still matches, so nothing the stack did not start is touched.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from workbook.paths import project_root
from workbook.errors import StackError
from workbook.stack import standby
from workbook.stack.registry import SERVICES
from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths, ServiceState, StackState, lock, stack_secret

STOP_WAIT_S = 15.0
PORT_WAIT_S = 5.0
# Signals that make each server shut down quickly and cleanly (PostgreSQL's SIGTERM waits
# for clients to disconnect; SIGINT is its "fast" shutdown).
STOP_SIGNAL = {"postgres": signal.SIGINT}


@dataclass
class StatusRow:
    name: str
    running: bool
    pid: int | None
    url: str
    version: str


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Below this, ports belong to services a developer may run (5432, 6379, 8000, 8123, 9000...).
LOWEST_PORT = 10000
PICK_TRIES = 200
# Ports this process handed out: two stacks starting side by side (run_all's slots) each check
# a port free and bind it later, so the same free port must not go to both.
_handed_out: set[int] = set()
_handing = threading.Lock()


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (Linux's default when unknown)."""
    try:
        low, high = (int(v) for v in EPHEMERAL_RANGE_FILE.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port free now and outside the ephemeral range. The server binds it later: a port the
    kernel picks (bind to 0) lies in that range, where any outgoing connection made in between
    may take it, and the server then fails with "address in use"."""
    low, high = ephemeral_range()
    candidates = [*range(LOWEST_PORT, low), *range(high + 1, 65536)]
    if candidates:
        for port in random.sample(candidates, min(PICK_TRIES, len(candidates))):
            with _handing:
                if port not in _handed_out and port_free(port, reuse=False):
                    _handed_out.add(port)
                    return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int, reuse: bool = True) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers themselves do, so a port in TIME_WAIT after a restart counts as free.
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _wait_gone(proc: psutil.Process, timeout: float) -> None:
    """Until `proc` has exited. A process another one started (the stack's are started by
    whichever process ran `up`) stays a zombie until that parent reaps it: that counts as gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
            proc.wait(0.05)
            return
        except psutil.NoSuchProcess:
            return
        except psutil.TimeoutExpired:
            if time.monotonic() > deadline:
                raise psutil.TimeoutExpired(timeout, proc.pid) from None


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.is_file():
        return "(no log written)"
    with path.open(errors="replace") as f:
        return "".join(deque(f, maxlen=lines)).rstrip() or "(log is empty)"


class Stack:
    def __init__(self, root: Path | None = None, services: list[ServiceSpec] | None = None,
                 base: Path | None = None):
        self.paths = Paths(root or project_root(), base)
        self.services = services if services is not None else SERVICES

    def spec(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise StackError(f"no service '{name}' in the stack (have: "
                         f"{', '.join(s.name for s in self.services)})")

    def state(self) -> StackState:
        return StackState.read(self.paths)

    def is_up(self) -> bool:
        state = self.state()
        return all(
            (s := state.services.get(spec.name)) is not None and s.process() is not None
            for spec in self.services
        )

    def any_running(self) -> bool:
        """Whether any recorded service still runs: then the stack is someone's, not ours to stop."""
        return any(s.process() is not None for s in self.state().services.values())

    def up(self, fresh: bool = False) -> tuple[list[str], list[str]]:
        """Bring every service up; returns (started, reused) service names. With `fresh`, a stack
        of which nothing runs starts on empty data (`set_data_aside`); a running one is reused."""
        with lock(self.paths):
            if fresh and not self.any_running():
                self.set_data_aside()
            state = self.state()
            started: list[str] = []
            reused: list[str] = []
            for wave in self._waves():
                todo = []
                for spec in wave:
                    known = state.services.get(spec.name)
                    if known and known.process():
                        if self._answers(spec, known):
                            reused.append(spec.name)
                            continue
                        # Ours but not answering (hung, or stuck on a dependency that was
                        # restarted): replace it, never leave it running unrecorded.
                        self._stop(known)
                        self._stop_standby(known)
                    todo.append(spec)
                if not todo:
                    continue
                for spec in todo:
                    self._new_log(spec.name)
                with ThreadPoolExecutor(max_workers=len(todo)) as pool:
                    futures = {s.name: pool.submit(self._start, s, state.services.get(s.name)) for s in todo}
                errors = []
                for name, fut in futures.items():
                    try:
                        state.services[name] = fut.result()
                        started.append(name)
                    except StackError as e:
                        errors.append(str(e))
                    except Exception as e:  # a bug here must not leave the other services orphaned
                        errors.append(f"{name} failed to start: {type(e).__name__}: {e}")
                if errors:
                    # Leave nothing half-started behind: what this call started, it stops.
                    for name in started:
                        svc = state.services.pop(name)
                        self._stop(svc)
                        self._stop_standby(svc)
                    state.write(self.paths)
                    raise StackError("\n".join(errors))
                # The next wave's services read their dependencies' endpoints from the state.
                state.write(self.paths)
            return started, reused

    def down(self) -> list[str]:
        with lock(self.paths):
            state = self.state()
            stopped = [svc.name for svc in reversed(list(state.services.values())) if self._stop(svc)]
            for svc in state.services.values():
                self._stop_standby(svc)
            self.paths.state.unlink(missing_ok=True)
            self.paths.stop_when_unused.unlink(missing_ok=True)
            return stopped

    def kill(self, name: str) -> None:
        """SIGKILL one service (a crash, for fault checks); it stays recorded so `restart` can revive it."""
        with lock(self.paths):
            svc = self._recorded(name)
            proc = svc.process()
            if proc is None:
                raise StackError(f"{name} is not running")
            self._signal_group(proc, signal.SIGKILL)
            _wait_gone(proc, STOP_WAIT_S)

    def _new_log(self, name: str) -> None:
        """A service brought up starts a new log (the one before kept as `.log.1`); restarts
        inside a stack's life append to it. So a log is one stack session's: what a check scans
        in it (secrets, errors) is this session's platform, not an earlier one's."""
        log = self.paths.log(name)
        if log.exists():
            log.replace(log.with_name(log.name + ".1"))

    def restart(self, name: str) -> ServiceState:
        """Stop (if running) and start one service again on the same port."""
        with lock(self.paths):
            state = self.state()
            svc = self._recorded(name)
            self._stop(svc)
            state.services[name] = self._start(self.spec(name), svc)
            state.write(self.paths)
            return state.services[name]

    def status(self) -> list[StatusRow]:
        state = self.state()
        rows = []
        for spec in self.services:
            svc = state.services.get(spec.name)
            proc = svc.process() if svc else None
            rows.append(StatusRow(spec.name, proc is not None, svc.pid if svc else None,
                                  svc.url if svc else "", svc.version if svc else ""))
        return rows

    def logs(self, name: str, lines: int = 40) -> str:
        self.spec(name)
        return log_tail(self.paths.log(name), lines)

    def set_data_aside(self) -> None:
        """Move what the stopped services stored into `previous/`, replacing what was there, so
        they start on empty data. Run after run, a reused store only grows (the append-only audit,
        spans, archived WAL): dumps, merges and scans slow down with it, and nothing a new run
        checks needs an old run's rows. With nothing stored, `previous/` stays as it is."""
        if self.any_running():
            raise StackError("the stack is running: stop it before setting its data aside")
        if not self.has_data():
            return
        previous = self.paths.previous
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir(parents=True)
        for path in self.paths.stored:
            if path.exists():
                path.rename(previous / path.name)

    def has_data(self) -> bool:
        # `Paths.ensure` makes an empty data/ before any service has stored anything.
        return any(path.is_dir() and any(path.iterdir()) for path in self.paths.stored)

    def _recorded(self, name: str) -> ServiceState:
        self.spec(name)
        svc = self.state().services.get(name)
        if svc is None:
            raise StackError(f"{name} was not started by this stack: run `python -m workbook.stack up`")
        return svc

    def _waves(self) -> list[list[ServiceSpec]]:
        names = {s.name for s in self.services}
        absent = {s.name: sorted(set(s.depends_on) - names) for s in self.services if set(s.depends_on) - names}
        if absent:
            raise StackError("services need others this stack does not start: "
                             + "; ".join(f"{n} needs {', '.join(d)}" for n, d in absent.items()))
        done: set[str] = set()
        pending = list(self.services)
        waves = []
        while pending:
            wave = [s for s in pending if set(s.depends_on) <= done]
            if not wave:
                raise StackError(f"services depend on each other in a loop: {[s.name for s in pending]}")
            waves.append(wave)
            done |= {s.name for s in wave}
            pending = [s for s in pending if s.name not in done]
        return waves

    def _answers(self, spec: ServiceSpec, svc: ServiceState) -> bool:
        try:
            spec.probe(svc.url, stack_secret(self.paths, spec.secret_name), timeout=2)
            return True
        except Exception:
            return False

    def _start(self, spec: ServiceSpec, previous: ServiceState | None) -> ServiceState:
        self.paths.ensure()
        old_port = int(previous.url.rsplit(":", 1)[1].split("/")[0]) if previous else None
        # A killed server's children (Redis' AOF rewrite, PostgreSQL's backends) may hold the
        # port a moment longer; the port is worth waiting for, since clients know it.
        deadline = time.monotonic() + PORT_WAIT_S
        while old_port and not port_free(old_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        port = old_port if old_port and port_free(old_port) else free_port()
        password = stack_secret(self.paths, spec.secret_name)
        log_path = self.paths.log(spec.name)
        try:
            launch = spec.prepare(self.paths, port, password)
        except Exception as e:
            raise StackError(f"{spec.name} could not be prepared: {e}") from None
        url = spec.url(port)
        cwd = self.paths.data(spec.name) if self.paths.data(spec.name).is_dir() else None
        with log_path.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting on port {port}\n".encode())
            log.flush()
            warm, cold = self._from_standby(spec, previous, launch), None
            if warm is None:
                cold = self._spawn(spec.name, launch.argv, launch, log, cwd)
        pid = cold.pid if cold is not None else warm.pid  # type: ignore[union-attr]  # one of them is set
        deadline = time.monotonic() + spec.start_timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            if cold is not None and cold.poll() is not None:
                raise StackError(f"{spec.name} exited with code {cold.returncode} while starting; "
                                 f"last lines of {log_path}:\n{log_tail(log_path)}")
            if warm is not None and not _running(warm):
                raise StackError(f"{spec.name} exited while starting; last lines of {log_path}:\n{log_tail(log_path)}")
            try:
                version = spec.probe(url, password, timeout=2)
                break
            except Exception as e:
                last_error = f"{type(e).__name__}: {e}"
                time.sleep(0.05)
        else:
            self._signal_group(psutil.Process(pid), signal.SIGKILL)
            raise StackError(f"{spec.name} did not answer within {spec.start_timeout_s:.0f}s "
                             f"({last_error}); last lines of {log_path}:\n{log_tail(log_path)}")
        svc = ServiceState(name=spec.name, pid=pid, create_time=psutil.Process(pid).create_time(), url=url,
                           user=spec.user, database=spec.database, version=version, log=str(log_path))
        if spec.preload:
            self._start_standby(spec, svc, launch, cwd)
        return svc

    def _start_standby(self, spec: ServiceSpec, svc: ServiceState, launch: Launch, cwd: Path | None) -> None:
        """A warm standby for the service's next start; none if it dies at once (a cold start then)."""
        fifo = self.paths.standby_fifo(spec.name)
        standby.make_fifo(fifo)
        with self.paths.log(spec.name).open("ab") as log:
            ready = self._spawn(f"{spec.name}-standby", [sys.executable, "-m", "workbook.stack.standby", str(fifo),
                                                        *spec.preload], launch, log, cwd)
        try:
            svc.standby_pid, svc.standby_create_time = ready.pid, psutil.Process(ready.pid).create_time()
        except psutil.NoSuchProcess:
            return
        svc.standby_for = standby.launch_digest(launch.env, launch.argv, launch.user)

    @staticmethod
    def _spawn(name: str, argv: list[str], launch: Launch, log: IO[bytes], cwd: Path | None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **launch.env}, user=launch.user, start_new_session=True, cwd=cwd)
        # Reaped as soon as it exits, so a long-running caller (run_all, pytest) keeps no zombies.
        threading.Thread(target=proc.wait, name=f"reap-{name}", daemon=True).start()
        return proc

    def _from_standby(self, spec: ServiceSpec, previous: ServiceState | None, launch: Launch) -> psutil.Process | None:
        """The service's warm standby, handed this start's command line; None to start cold."""
        warm = previous.standby() if previous else None
        if warm is None or previous is None:
            return None
        fifo = self.paths.standby_fifo(spec.name)
        if previous.standby_for == standby.launch_digest(launch.env, launch.argv, launch.user) and \
                not standby.stale(spec.preload, previous.standby_create_time) and \
                standby.hand_over(fifo, launch.argv[1:], alive=lambda: previous.standby() is not None):
            return warm
        self._stop_standby(previous)  # for another configuration or older code, or not ready in time
        return None

    def _stop_standby(self, svc: ServiceState) -> None:
        warm = svc.standby()
        if warm is not None:
            self._signal_group(warm, signal.SIGKILL)
            _wait_gone(warm, STOP_WAIT_S)
        self.paths.standby_fifo(svc.name).unlink(missing_ok=True)

    def _stop(self, svc: ServiceState) -> bool:
        proc = svc.process()
        if proc is None:
            return False
        self._signal_group(proc, STOP_SIGNAL.get(svc.name, signal.SIGTERM), leader_only=True)
        try:
            _wait_gone(proc, STOP_WAIT_S)
        except psutil.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            _wait_gone(proc, STOP_WAIT_S)
        # Children the leader left behind (PostgreSQL backends) share its process group.
        self._signal_group(proc, signal.SIGKILL)
        return True

    @staticmethod
    def _signal_group(proc: psutil.Process, sig: int, leader_only: bool = False) -> None:
        try:
            if leader_only:
                proc.send_signal(sig)
            else:
                os.killpg(proc.pid, sig)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
