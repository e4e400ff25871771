"""One embedded stack, many notebooks: checks run together, a fault runs alone.

Every check against the embedded stack holds a shared lock on `outputs/.stack/checks.lock`
while it runs; `faults.kill` turns the running check's hold into an exclusive one until
`faults.restart` (or the end of the check), so no check of another notebook (run_all runs
notebooks in parallel) sees an outage it did not cause, and the fault waits for the checks
in flight. flock locks belong to the open file, so the process's one file carries the hold.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

_fd: int | None = None
_held_shared = False
_exclusive_depth = 0  # nested holds: `faults.alone` around a kill/restart keeps it past the restart


def _file(root: Path) -> int:
    global _fd
    if _fd is None:
        path = root / "outputs" / ".stack" / "checks.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        _fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    return _fd


def enter_check(root: Path) -> None:
    global _held_shared
    fcntl.flock(_file(root), fcntl.LOCK_SH)
    _held_shared = True


def exit_check() -> None:
    global _held_shared, _exclusive_depth
    if _fd is not None and (_held_shared or _exclusive_depth):
        fcntl.flock(_fd, fcntl.LOCK_UN)
    _held_shared = False
    _exclusive_depth = 0


def exclusive(root: Path) -> None:
    """Block until this process alone holds the stack (waits for other notebooks' checks)."""
    global _exclusive_depth
    if not _exclusive_depth:
        fcntl.flock(_file(root), fcntl.LOCK_EX)
    _exclusive_depth += 1


def shared_again() -> None:
    """Undo one `exclusive`; the last one goes back to the running check's shared hold (or none)."""
    global _exclusive_depth
    if not _exclusive_depth:
        return
    _exclusive_depth -= 1
    if _fd is not None and not _exclusive_depth:
        fcntl.flock(_fd, fcntl.LOCK_SH if _held_shared else fcntl.LOCK_UN)
