"""Calling the runner the way run_all.py does, quietly."""

from __future__ import annotations

from rich.console import Console

from workbook.runner import RunOptions, Runner


def run(**kw) -> int:
    kw.setdefault("parallel", 2)
    kw.setdefault("timeout_s", 120)
    return Runner(RunOptions(**kw), console=Console(soft_wrap=True)).run()
