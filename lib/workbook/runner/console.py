"""What run_all prints: a line per finished notebook, the failures and the verdict."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from workbook.results import CheckResult, Leftover, LeftoverReport, NotebookResult, RunResults

FAILURES_SHOWN = 50


def notebook_line(console: Console, r: NotebookResult, checks: list[CheckResult]) -> None:
    mark = {"passed": "[green]PASS[/]", "failed": "[red]FAIL[/]"}.get(r.status, f"[red]{r.status.upper()}[/]")
    waited = sum(c.waited_s for c in checks)
    # Where a notebook's time went: its kernel working (CPU), or waiting - on the platform's
    # answers and clocks, on its own start, and on other notebooks' faults (told apart).
    idle = max(0.0, r.duration_s - r.kernel_cpu_s)
    split = (f"{r.duration_s:.1f}s: working {r.kernel_cpu_s:.1f}s, waiting {idle:.1f}s, "
             f"{waited:.1f}s of it behind other notebooks' faults and quiet checks")
    console.print(f"{mark} {r.name} ({split}){' - ' + r.error if r.error else ''}", highlight=False)


def summary(console: Console, results: RunResults, run_dir: Path, html: Path, parallel: int,
            interrupted: bool = False, alone: dict[str, float] | None = None) -> None:
    t = results.totals
    failed = [c for c in results.checks if c.status == "failed"]
    for c in failed[:FAILURES_SHOWN]:
        console.print(f"  [red]FAIL[/] {c.id}: {c.message}", highlight=False)
    if len(failed) > FAILURES_SHOWN:
        console.print(f"  ... and {len(failed) - FAILURES_SHOWN} more in {run_dir / 'results.json'}")
    for h in results.secret_hits:
        console.print(f"  [red]SECRET[/] {h.file}: {h.encoding} encoding of {h.secret}", highlight=False)
    for item in results.leftovers.items if results.leftovers else []:
        console.print(f"  [red]LEFTOVER[/] {leftover_line(item)}", highlight=False)
    verdict = ("[yellow]INTERRUPTED[/]" if interrupted
               else "[green]ALL PASSED[/]" if results.green else "[red]FAILED[/]")
    console.print(
        f"{verdict}: {t.passed} passed, {t.failed} failed, {t.skipped} skipped; "
        f"{len(results.notebooks) - t.notebooks_failed}/{len(results.notebooks)} notebooks passed "
        f"in {results.duration_s:.1f}s", highlight=False)
    console.print(f"secret scan: {len(results.secret_hits)} secrets found in {results.files_scanned} files "
                  f"({results.secrets_checked} secret(s) looked for)", highlight=False)
    if results.leftovers is not None:
        console.print(f"leftovers: {leftovers_line(results.leftovers)}", highlight=False)
    if results.duration_s > 0 and len(results.notebooks) > 1 and not results.merged_from:
        console.print(parallel_line(results, parallel, alone or {}), highlight=False)
    console.print(f"report: {html}", highlight=False)


def parallel_line(results: RunResults, parallel: int, alone: dict[str, float]) -> str:
    """What running notebooks side by side bought: this run's time (the stack's start included)
    against the same notebooks run one after another, each alone (`history.alone_times`)."""
    wall = results.duration_s + results.stack_start_s
    names = [n.name for n in results.notebooks]
    missing = [n for n in names if n not in alone]
    partial = any("." in pattern for pattern in results.only)
    if missing or partial:
        own = sum(n.duration_s for n in results.notebooks)
        which = "any of them" if len(missing) == len(names) else ", ".join(missing)
        why = ("parts of notebooks ran: whole notebooks' alone times say nothing of them" if partial else
               f"no alone time on record for {which}: a run with --parallel 1 records them")
        return (f"the notebooks' own times add up to {own:.1f}s: {own / results.duration_s:.1f}x from running "
                f"{parallel} at a time ({why})")
    serial = sum(alone[n] for n in names)
    stacks = f" on {results.stacks} stacks" if results.stacks > 1 else ""
    return (f"alone, one after another, these {len(names)} notebooks take {serial:.1f}s (their newest alone runs); "
            f"this run took {wall:.1f}s with the stack's start ({results.stack_start_s:.1f}s): "
            f"{wall / serial:.2f} of that, running {parallel} at a time{stacks}")


def leftover_line(item: Leftover) -> str:
    return (f"{item.store} {item.where}: {item.count}, left by "
            f"{', '.join(item.checks) or 'no check that could be told'} (e.g. {item.example})")


def leftovers_line(report: LeftoverReport) -> str:
    """`0 leftovers (postgres 0, redis 0, clickhouse: not swept, <why>)`."""
    stores = ", ".join(f"{s.store} {s.found}" if s.swept else f"{s.store}: not swept, {s.reason}" for s in report.stores)
    return f"{report.total} leftovers ({stores})"
