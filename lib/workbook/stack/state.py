"""Where the embedded stack keeps what it started: state file, secrets, lock, paths.

Everything lives under outputs/.stack/ of the checkout, or under the directory
`WORKBOOK_STACK_DIR` names: run_all gives each parallel slot a stack of its own
(outputs/.stack-2/, ...) and its kernels that variable. The state file names each process
by pid *and* start time, so a pid the OS has since reused for something else is never
mistaken for ours and never signalled.
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from filelock import FileLock
from pydantic import BaseModel, SecretStr

from workbook.errors import StackError
from workbook.paths import project_root


STACK_DIR_VAR = "WORKBOOK_STACK_DIR"


def slot_stack_dir(root: Path, slot: int) -> Path:
    """The stack of run_all's parallel slot `slot` (1-based): the first is the default stack."""
    return root / "outputs" / (".stack" if slot == 1 else f".stack-{slot}")


class Paths:
    def __init__(self, root: Path, base: Path | None = None):
        self.root = root
        # A relative WORKBOOK_STACK_DIR is the checkout's (outputs/.stack-2), wherever the process runs.
        named = os.environ.get(STACK_DIR_VAR)
        self.base = base or (root / named if named else slot_stack_dir(root, 1))
        self.state = self.base / "state.json"
        self.secrets = self.base / "secrets.json"
        self.lock = self.base / "stack.lock"
        # Held shared by every run using the stack; a run due to stop it while another still
        # holds it leaves the marker, and the last one out stops the stack.
        self.users = self.base / "users.lock"
        self.stop_when_unused = self.base / "stop-when-unused"

    def data(self, service: str) -> Path:
        return self.base / "data" / service

    @property
    def wal_archive(self) -> Path:
        """Where the stack's PostgreSQL archives its WAL segments."""
        return self.base / "wal_archive"

    @property
    def stored(self) -> tuple[Path, ...]:
        """What the services keep between starts: their data directories and the WAL archive."""
        return self.base / "data", self.wal_archive

    @property
    def previous(self) -> Path:
        """Where a fresh start puts what the stack stored before (one generation is kept)."""
        return self.base / "previous"

    def log(self, service: str) -> Path:
        return self.base / "logs" / f"{service}.log"

    def standby_fifo(self, service: str) -> Path:
        """Where a service's warm standby waits for its next start (workbook.stack.standby)."""
        return self.base / "standby" / f"{service}.fifo"

    def ensure(self) -> None:
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        (self.base / "data").mkdir(parents=True, exist_ok=True)


class ServiceState(BaseModel):
    name: str
    pid: int
    create_time: float  # psutil's, to tell our process from a reused pid
    url: str
    user: str | None = None
    database: str | None = None
    version: str = ""
    log: str = ""
    # The warm standby started after this start (workbook.stack.standby), for the next one.
    standby_pid: int | None = None
    standby_create_time: float = 0.0
    standby_for: str = ""  # launch_digest of the launch it was started with

    def process(self) -> psutil.Process | None:
        """Our process if it still runs, else None (also when the pid now belongs to another)."""
        return _ours(self.pid, self.create_time)

    def standby(self) -> psutil.Process | None:
        return _ours(self.standby_pid, self.standby_create_time) if self.standby_pid else None

    def listening_ports(self) -> set[int] | None:
        """TCP ports our process or its children listen on; None if it is not running. Children
        come and go while this reads (PostgreSQL forks one per connection): one that ended
        between the listing and its reading listened on nothing any more."""
        proc = self.process()
        if proc is None:
            return None
        ports: set[int] = set()
        for p in [proc, *proc.children(recursive=True)]:
            try:
                ports |= {c.laddr.port for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
            except psutil.NoSuchProcess:
                continue
        return ports


def _ours(pid: int, create_time: float) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 0.01:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


class StackState(BaseModel):
    services: dict[str, ServiceState] = {}

    @classmethod
    def read(cls, paths: Paths) -> StackState:
        if not paths.state.is_file():
            return cls()
        return cls.model_validate_json(paths.state.read_text())

    def write(self, paths: Paths) -> None:
        paths.ensure()
        tmp = paths.state.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=1))
        tmp.replace(paths.state)


def lock(paths: Paths, timeout: float = 120) -> FileLock:
    """Serialises up/down/restart across processes (two pytest workers, a notebook, a CLI)."""
    paths.ensure()
    return FileLock(str(paths.lock), timeout=timeout)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (passwords, configs holding them), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


_secrets_lock = threading.Lock()  # services start in parallel threads


def stack_secret(paths: Paths, service: str) -> str:
    """The generated password of one service, created on first use and kept across restarts."""
    paths.ensure()
    with _secrets_lock:
        data: dict[str, str] = json.loads(paths.secrets.read_text()) if paths.secrets.is_file() else {}
        if service not in data:
            data[service] = _secrets.token_urlsafe(18)
            write_private(paths.secrets, json.dumps(data))
        return data[service]


@dataclass(frozen=True)
class Endpoint:
    """How a client reaches one running service of the stack."""

    url: str
    user: str | None
    database: str | None
    password: str | None = field(repr=False)


def embedded_endpoints(root: Path | None = None, logins: dict[str, tuple[str, str]] | None = None,
                       base: Path | None = None) -> dict[str, Endpoint]:
    """The running stack's endpoints, passwords included; one clear line if it is not running.
    `logins` adds endpoints that are another user of a running service: {name: (service, user)},
    with the password the stack generated under `name`. `base`: another stack than the default."""
    paths = Paths(root or project_root(), base)
    state = StackState.read(paths)
    # Only a stack with nothing running is refused: one service down may be another notebook's
    # fault (a killed backend, restarted in seconds), which the service locks already make checks
    # wait for; a notebook set up in that moment must not fail (seen: 06 set up while 03 had its
    # backend down). A service that stays down fails its checks, and preflight, by name.
    if not state.services or all(s.process() is None for s in state.services.values()):
        raise StackError("the local stack is needed (it is not running): start it with "
                         "`python -m workbook.stack up`")
    passwords = json.loads(paths.secrets.read_text()) if paths.secrets.is_file() else {}
    found = {name: Endpoint(svc.url, svc.user, svc.database, passwords.get(name))
             for name, svc in state.services.items()}
    for name, (service, user) in (logins or {}).items():
        if service in state.services and name in passwords:
            found[name] = Endpoint(state.services[service].url, user, state.services[service].database,
                                   passwords[name])
    return found
