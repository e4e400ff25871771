"""Errors the workbook raises for the engineer to act on: one line each, no traceback noise."""

from __future__ import annotations


class WorkbookError(Exception):
    """A problem with the engineer's setup (params, secrets, stack), not a failed check.

    IPython prints `_render_traceback_()` instead of a traceback, so a notebook cell shows
    the one line that says what to do.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ConfigError(WorkbookError):
    """params/<env>.yaml is missing, malformed, or names a secret that is not set."""


class StackError(WorkbookError):
    """The embedded local stack is not running or a service in it failed."""
