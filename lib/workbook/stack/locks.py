"""One embedded stack, many notebooks: a lock per service, so a fault stops only the checks it
would break.

A running check holds a shared lock on every service it has used (a client's request to a
service takes it); a fault (`faults.kill`, `faults.alone`, or a check opened with `alone=`)
holds exclusive locks on the services it breaks and on everything that depends on them
(killing Redis breaks auth and the backends too). When run_all runs notebooks in parallel, no
check meets an outage another notebook caused, a fault waits for the checks in flight that use
what it breaks, and checks that use none of it go on.

Deadlock-free by construction:
- faults run one at a time (`faulting`, held for as long as a process holds anything
  exclusively), so only one process ever holds exclusive locks, and it never waits on a
  shared lock: it can use any other service while it holds its own;
- a fault takes its set all at once: it lets go of what it holds, then tries every lock
  without blocking and, if one is busy, lets go and retries; while it gathers, checks wait at
  their start (`gathering`), so in-flight checks drain and new ones cannot starve it;
- a check waits only at its start and on a lock the one faulting process holds.

A check may also take a named lock (`check(..., serial="model_failures")`) that no other check
holding that name, in any process, runs beside: for checks that each move a shared count (the
model breaker's failures in a row) that one of them alone keeps under its bound, but two at once
would not. It is taken at the check's start, before any service, and a check holding one makes
no fault, so it never waits on a process that waits on it.

A check that times the platform against a measured budget opens with `quiet=True`: it has
the machine to itself. Every check holds the machine lock shared (in `machine_dir`, one for
the checkout, so it spans every stack run_all started); a quiet one holds it exclusively, after
the checks in flight on every stack end, and new ones wait at their start (`quiet-gathering`,
as for a fault) so they cannot starve it. It is taken first, before any service, and held to
the check's end; no check waits on it while holding anything another waits on.

A fault opened in the middle of a check lets go of the check's locks while it gathers, so
another notebook's fault may run in that moment; a check that will make a fault says so when
it opens (`check(..., alone=(...))`) and holds its set from the start. flock locks belong to
the open file, so each process keeps one open file per lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from workbook.errors import WorkbookError

RETRY_S = 0.02
FAULTING, GATHERING = "_faulting", "_gathering"
MACHINE, QUIET_GATHERING = "machine", "quiet-gathering"


class ServiceLocks:
    def __init__(self, directory: Path, depends_on: Mapping[str, Iterable[str]], machine_dir: Path | None = None):
        self.directory = directory
        self.machine_dir = machine_dir or directory
        self.depends_on = {name: tuple(deps) for name, deps in depends_on.items()}
        self._fds: dict[str, int] = {}
        self._machine: int | None = None  # the machine lock's fd while a check holds it
        self._used: set[str] = set()  # what the running check used
        self._exclusive: list[frozenset[str]] = []  # nested exclusive holds, innermost last
        self._held: dict[str, int] = {}  # service -> LOCK_SH / LOCK_EX as held now
        self._serial: str | None = None
        # Seconds spent blocked on other processes since the last `waited()` (what a fault of
        # another notebook cost this one; run_all reports it). A check's concurrent requests wait
        # in threads side by side: their waits overlap and count once.
        self._waited = 0.0
        self._blocked = 0
        self._blocked_since = 0.0
        self._count = threading.Lock()

    def waited(self) -> float:
        """Seconds blocked on other processes' locks since the last call."""
        out, self._waited = self._waited, 0.0
        return out

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        with self._count:
            if self._blocked == 0:
                self._blocked_since = time.monotonic()
            self._blocked += 1
        try:
            yield
        finally:
            with self._count:
                self._blocked -= 1
                if self._blocked == 0:
                    self._waited += time.monotonic() - self._blocked_since

    def breaks(self, services: Iterable[str]) -> frozenset[str]:
        """`services` and every service that (transitively) depends on one of them."""
        out = set(services)
        unknown = out - set(self.depends_on)
        if unknown:
            raise ValueError(f"no service {', '.join(sorted(unknown))} in the stack")
        grew = True
        while grew:
            grew = False
            for name, deps in self.depends_on.items():
                if name not in out and out.intersection(deps):
                    out.add(name)
                    grew = True
        return frozenset(out)

    @property
    def exclusive_now(self) -> frozenset[str]:
        return frozenset().union(*self._exclusive)

    # -- a check --------------------------------------------------------------------------------

    def machine(self, quiet: bool = False) -> None:
        """A check starts: share the machine with other notebooks' checks, or (quiet) wait until
        none is in flight on any stack and keep new ones out until it ends."""
        gate = self._fd(QUIET_GATHERING, self.machine_dir)
        held = self._fd(MACHINE, self.machine_dir)
        with self._waiting():
            if quiet:
                fcntl.flock(gate, fcntl.LOCK_EX)
                try:
                    fcntl.flock(held, fcntl.LOCK_EX)
                finally:
                    fcntl.flock(gate, fcntl.LOCK_UN)
            else:
                fcntl.flock(gate, fcntl.LOCK_SH)
                fcntl.flock(gate, fcntl.LOCK_UN)
                fcntl.flock(held, fcntl.LOCK_SH)
        self._machine = held

    def begin(self) -> None:
        """A check starts: wait while a fault gathers its locks."""
        fd = self._fd(GATHERING)
        with self._waiting():
            fcntl.flock(fd, fcntl.LOCK_SH)
            fcntl.flock(fd, fcntl.LOCK_UN)

    def would_wait(self, service: str) -> bool:
        """Whether `use(service)` would block now (another process's fault holds it)."""
        if service in self._held:
            return False
        fd = self._fd(service)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        self._held[service] = fcntl.LOCK_SH
        self._used.add(service)
        return False

    def use(self, service: str) -> None:
        """The running check uses `service`: hold it shared until the check ends (blocks while a
        fault of another process holds it)."""
        self._used.add(service)
        if service in self._held:
            return
        with self._waiting():
            fcntl.flock(self._fd(service), fcntl.LOCK_SH)
        self._held[service] = fcntl.LOCK_SH

    def wait_free(self, service: str) -> None:
        """Outside any check: until no fault of another process holds `service`; holds nothing."""
        if service in self._held:
            return
        fd = self._fd(service)
        with self._waiting():
            fcntl.flock(fd, fcntl.LOCK_SH)
        fcntl.flock(fd, fcntl.LOCK_UN)

    def serial(self, name: str) -> None:
        """The starting check runs beside no other check holding `name` (see the module's doc)."""
        fd = self._fd(f"serial-{name}")
        with self._waiting():
            fcntl.flock(fd, fcntl.LOCK_EX)
        self._serial = name

    def end(self) -> None:
        """The check ended: let go of everything, also exclusive holds it did not undo."""
        if self._machine is not None:
            fcntl.flock(self._machine, fcntl.LOCK_UN)
            self._machine = None
        if self._serial is not None:
            fcntl.flock(self._fds[f"serial-{self._serial}"], fcntl.LOCK_UN)
            self._serial = None
        for name in list(self._held):
            fcntl.flock(self._fds[name], fcntl.LOCK_UN)
        self._held.clear()
        self._used.clear()
        if self._exclusive:
            self._exclusive.clear()
            fcntl.flock(self._fd(FAULTING), fcntl.LOCK_UN)

    # -- a fault --------------------------------------------------------------------------------

    def exclusive(self, services: Iterable[str]) -> frozenset[str]:
        """Hold `services` and what depends on them alone (nested holds add up); returns that set."""
        if self._serial is not None:
            raise WorkbookError(f"a check holding the serial lock {self._serial!r} makes no fault: "
                                "open it with alone=(...) instead")
        wanted = self.breaks(services)
        already = self.exclusive_now
        first = not self._exclusive
        self._exclusive.append(wanted)
        if wanted <= already:
            return wanted
        with self._waiting():
            self._let_go()
            if first:
                fcntl.flock(self._fd(FAULTING), fcntl.LOCK_EX)
            self._gather()
        return wanted

    def shared_again(self) -> None:
        """Undo the innermost `exclusive`; what the check used stays held shared, the rest is let go."""
        if not self._exclusive:
            return
        self._exclusive.pop()
        target = self._target()
        for name, mode in list(self._held.items()):
            want = target.get(name)
            if want is None:
                fcntl.flock(self._fds[name], fcntl.LOCK_UN)
                del self._held[name]
            elif want != mode:
                fcntl.flock(self._fds[name], want)
                self._held[name] = want
        if not self._exclusive:
            fcntl.flock(self._fd(FAULTING), fcntl.LOCK_UN)

    def _target(self) -> dict[str, int]:
        ex = self.exclusive_now
        return {**{s: fcntl.LOCK_SH for s in self._used - ex}, **{s: fcntl.LOCK_EX for s in ex}}

    def _let_go(self) -> None:
        for name in list(self._held):
            fcntl.flock(self._fds[name], fcntl.LOCK_UN)
        self._held.clear()

    def _gather(self) -> None:
        target = sorted(self._target().items())
        gathering = self._fd(GATHERING)
        fcntl.flock(gathering, fcntl.LOCK_EX)
        try:
            while True:
                got: list[str] = []
                for name, mode in target:
                    try:
                        fcntl.flock(self._fd(name), mode | fcntl.LOCK_NB)
                    except BlockingIOError:
                        break
                    got.append(name)
                if len(got) == len(target):
                    self._held.update(target)
                    return
                for name in got:
                    fcntl.flock(self._fds[name], fcntl.LOCK_UN)
                time.sleep(RETRY_S)
        finally:
            fcntl.flock(gathering, fcntl.LOCK_UN)

    def _fd(self, name: str, directory: Path | None = None) -> int:
        key = name if directory is None else f"{directory}/{name}"
        if key not in self._fds:
            where = directory or self.directory
            where.mkdir(parents=True, exist_ok=True)
            self._fds[key] = os.open(where / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        return self._fds[key]
