"""Two runs side by side (`run_all.py --compare A B`, and the report's environment diff): the
checks whose status differs, with both messages, and every measurement with its budget in each.

The usual question is "it passes locally, why not on staging?": the same checks on the same
code against two environments, where the numbers say more than the verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbook.errors import WorkbookError
from workbook.results import CheckResult, Measurement, RunResults
from workbook.runner.history import read_history


class RunNotFound(WorkbookError):
    """A run reference names no run directory: a usage error."""


@dataclass
class StatusDiff:
    id: str
    a: CheckResult | None  # None: the check is not in run A
    b: CheckResult | None


@dataclass
class MeasurementRow:
    id: str
    name: str
    a: Measurement | None
    b: Measurement | None


@dataclass
class Comparison:
    a: RunResults
    b: RunResults
    status: list[StatusDiff]
    measurements: list[MeasurementRow]


def resolve_run(ref: str, outputs_dir: Path) -> Path:
    """A run directory from a path, `latest`, a run id under outputs/, or an env name (that
    env's newest run in the history)."""
    for candidate in (Path(ref), outputs_dir / ref):
        if (candidate / "results.json").is_file():
            return candidate.resolve()
    runs = [e for e in read_history(outputs_dir / "history.jsonl") if e.env == ref]
    if runs:
        newest = max(runs, key=lambda e: e.started_at)
        path = outputs_dir / newest.run_dir
        if (path / "results.json").is_file():
            return path.resolve()
        raise RunNotFound(f"{ref}: its newest run {newest.run_id} has no {path / 'results.json'}")
    raise RunNotFound(f"{ref}: not a run directory, a run id under {outputs_dir}, or an env with a run in its history")


def compare(a: RunResults, b: RunResults) -> Comparison:
    checks_a = {c.id: c for c in a.checks}
    checks_b = {c.id: c for c in b.checks}
    ids = list(dict.fromkeys([*checks_a, *checks_b]))
    status = [StatusDiff(i, checks_a.get(i), checks_b.get(i)) for i in ids
              if (checks_a[i].status if i in checks_a else None) != (checks_b[i].status if i in checks_b else None)]
    rows = []
    for i in ids:
        ma = {m.name: m for m in checks_a[i].measurements} if i in checks_a else {}
        mb = {m.name: m for m in checks_b[i].measurements} if i in checks_b else {}
        rows += [MeasurementRow(i, name, ma.get(name), mb.get(name)) for name in dict.fromkeys([*ma, *mb])]
    return Comparison(a, b, status, rows)


def label(r: RunResults) -> str:
    return f"{r.run_id} ({r.env}, {r.commit[:10] + ('+dirty' if r.dirty else '') if r.commit else 'unknown commit'})"


def status_text(c: CheckResult | None) -> str:
    return c.status if c is not None else "not run"


def measurement_text(m: Measurement | None) -> str:
    if m is None:
        return "-"
    budget = f" / {m.budget:g}" if m.budget is not None else ""
    over = " OVER" if m.budget is not None and m.value > m.budget else ""
    return f"{m.value:g}{budget} {m.unit}{over}"


def format_comparison(cmp: Comparison) -> str:
    lines = [f"A: {label(cmp.a)}", f"B: {label(cmp.b)}"]
    if cmp.a.tree and cmp.a.tree != cmp.b.tree:
        lines.append("note: the runs were made from different code")
    lines.append(f"\nstatus differs: {len(cmp.status)} check(s)")
    for d in cmp.status:
        lines.append(f"  {d.id}: A {status_text(d.a)}, B {status_text(d.b)}")
        for side, c in (("A", d.a), ("B", d.b)):
            if c is not None and c.message:
                lines.append(f"    {side}: {c.message}")
    lines.append(f"\nmeasurements: {len(cmp.measurements)} (value / budget in A | in B)")
    if cmp.measurements:
        rows = [(f"{r.id} {r.name}", measurement_text(r.a), measurement_text(r.b)) for r in cmp.measurements]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines += [f"  {what:<{w0}}  {a:<{w1}} | {b}" for what, a, b in rows]
    return "\n".join(lines)
