"""Who starts the embedded stack and who stops it: one rule for run_all and the pytest plugin.

A run brings the stack up when its env is embedded and the stack is not fully running, and at
its end stops it only if nothing of it was running when the run began: a stack an engineer
started (or one partly running, whose crashed service the run healed) is someone's, and stays.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from workbook.params import load_params
from workbook.stack.manager import Stack


class StackLease:
    def __init__(self, env: str, keep: bool = False, say: Callable[[str], None] = lambda _: None):
        self.embedded = load_params(env).stack == "embedded"
        self.stack = Stack() if self.embedded else None
        self.keep = keep
        self.say = say
        # Decided when the run begins, before anything of ours runs.
        self.ours = self.stack is not None and not self.stack.any_running()

    def up(self) -> None:
        """Bring the stack up if it is needed and not fully running (safe from several processes)."""
        if self.stack is not None and not self.stack.is_up():
            self.say("starting the embedded stack ...")
            self.stack.up()

    def release(self) -> None:
        """Stop the stack if this run started it (and was not asked to keep it)."""
        if self.stack is None or not self.ours or self.keep or not self.stack.state().services:
            return
        self.stack.down()
        self.say("stopped the embedded stack this run started (keep it with --keep-stack or WORKBOOK_KEEP_STACK=1)")

    def __enter__(self) -> StackLease:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
