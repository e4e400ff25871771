"""Warm standbys for the stack's Python services, so a restart does not wait on their imports.

Restarting a backend took about 1.4 s, of which a second went to importing it (FastAPI,
SQLAlchemy, OpenTelemetry, the agents) before it read a setting; fault checks restart backends
often. After each start of a service whose spec names modules to `preload`, the stack starts a
standby, `python -m workbook.stack.standby FIFO MODULE...`, with the environment that start had.
It imports the modules, then waits on its FIFO. The next
start of the service hands it the command line (`-m app.backend --port ...`) and it runs the
module as `__main__`, as `python -m` would: settings, validation, migrations and serving happen
then, in that process, exactly as in a cold start; only the imports were done earlier.

A standby is used only for the environment it was started with and only while the code it
imported is unchanged; anything else (another configuration, an edited source file, a standby
that died or is still importing past the wait) means a cold start.
(Auth has none: each of its starts registers a new OIDC client, so no two launches match.)
The state file records a standby beside its service, and `down` stops both. The FIFO is the
stack's: it makes a new one for each standby and removes it with the standby, so a standby that
was handed its start leaves the path alone. In `ps` a backend started this way shows the standby's
command line, which names the backend's modules.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import importlib.util
import json
import os
import runpy
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

# How long a start waits for a standby still importing: it began importing at the last start,
# so it is nearly done; a cold start would take longer than this.
READY_WAIT_S = 3.0


def launch_digest(env: dict[str, str], argv: list[str], user: str | None) -> str:
    """What a standby was started for, without the passwords the environment holds: the
    service's own variables, its interpreter and module, and its system user (the port comes
    with the command line at the hand-over)."""
    body = json.dumps([sorted(env.items()), argv[:3], user])
    return hashlib.sha256(body.encode()).hexdigest()


def stale(modules: tuple[str, ...], since: float) -> bool:
    """Whether a source file of the packages `modules` belong to changed after `since` (a standby's
    start): it imported the code before the edit, and would serve that."""
    for package in {m.split(".")[0] for m in modules}:
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            for path in Path(root).rglob("*.py"):
                if path.stat().st_mtime > since:
                    return True
    return False


def make_fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    os.mkfifo(path, 0o600)


def hand_over(fifo: Path, argv: list[str], alive: Callable[[], bool]) -> bool:
    """Give the standby reading `fifo` its command line (argv after the interpreter). False when
    nobody reads it within READY_WAIT_S, or `alive()` says the standby is gone: start cold then."""
    deadline = time.monotonic() + READY_WAIT_S
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno not in (errno.ENXIO, errno.ENOENT) or time.monotonic() > deadline or not alive():
                return False
            time.sleep(0.02)
    try:
        os.write(fd, (json.dumps(argv) + "\n").encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def main() -> None:
    fifo, modules = Path(sys.argv[1]), sys.argv[2:]
    for module in modules:
        importlib.import_module(module)
    if not stat.S_ISFIFO(fifo.stat().st_mode):
        raise SystemExit(f"standby: {fifo} is not a FIFO")
    with fifo.open() as f:  # blocks until a start hands over
        line = f.readline()
    if not line:
        raise SystemExit(0)  # the stack stopped it before it was needed
    argv = json.loads(line)
    if argv[:1] != ["-m"] or len(argv) < 2:
        raise SystemExit(f"standby: expected `-m MODULE ...`, got {argv[:2]}")
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
