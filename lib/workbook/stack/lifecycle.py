"""Who starts the embedded stack and who stops it: one rule for run_all and the pytest plugin.

A run brings the stack up when its env is embedded and the stack is not fully running, and at
its end stops it only if nothing of it was running when the run began: a stack an engineer
started (or one partly running, whose crashed service the run healed) is someone's, and stays.
A stack the run starts from nothing starts on fresh data; the data it stored before is kept, one
generation, under `outputs/.stack/previous/`.

Runs may share one stack (two run_alls at once, run_all beside pytest). Each holds a shared
lock on `users.lock` while it runs; a run due to stop the stack while another still holds it
leaves that to the last one out (the `stop-when-unused` marker), so no run loses its stack
mid-check and none leaves it behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from types import TracebackType

from workbook.params import load_params
from workbook.stack.manager import Stack


class StackLease:
    def __init__(self, env: str, keep: bool = False, say: Callable[[str], None] = lambda _: None,
                 holds: bool = True, stack: Stack | None = None):
        """`holds=False` for a process that uses the stack for another one that holds it (a
        pytest-xdist worker, whose controller holds and releases)."""
        self.embedded = load_params(env).stack == "embedded"
        self.stack = (stack or Stack()) if self.embedded else None
        self.keep = keep
        self.say = say
        self._users: int | None = None
        if self.stack is not None and holds:
            self.stack.paths.ensure()
            self._users = os.open(self.stack.paths.users, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._users, fcntl.LOCK_SH)
        # Decided when the run begins, before anything of ours runs.
        self.ours = self.stack is not None and not self.stack.any_running()

    def up(self) -> None:
        """Bring the stack up if it is needed and not fully running (safe from several processes).
        A stack this run starts from nothing starts on fresh data, the last data kept aside."""
        if self.stack is not None and not self.stack.is_up():
            fresh = self.ours and not self.stack.any_running()
            self.say(f"starting the embedded stack on fresh data (the last run's moves to {self.stack.paths.previous}) ..."
                     if fresh and self.stack.has_data() else "starting the embedded stack ...")
            self.stack.up(fresh=fresh)

    def release(self) -> None:
        """Stop the stack if this run started it, or another that did handed it on, and no other
        run still uses it (unless asked to keep it)."""
        if self.stack is None or self._users is None:
            return
        os.close(self._users)  # lets go of this run's shared hold
        self._users = None
        marker = self.stack.paths.stop_when_unused
        if self.keep:
            marker.unlink(missing_ok=True)
            return
        if not (self.ours or marker.exists()) or not self.stack.state().services:
            return
        if self._others_use():
            marker.touch()
            self.say("left the embedded stack running: another run still uses it and stops it when it ends")
            return
        self.stack.down()
        whose = "this run started" if self.ours else "another run started and left to the last one out"
        self.say(f"stopped the embedded stack {whose} (keep it with --keep-stack or WORKBOOK_KEEP_STACK=1)")

    def _others_use(self) -> bool:
        assert self.stack is not None
        fd = os.open(self.stack.paths.users, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def __enter__(self) -> StackLease:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
