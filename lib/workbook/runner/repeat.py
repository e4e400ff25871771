"""`--repeat K`: the same selection K times on one stack, then every check whose verdict was not
the same in all K runs, with each run's message and duration: a flaky check, caught on purpose
instead of by a red CI run next week."""

from __future__ import annotations

from dataclasses import dataclass

from workbook.results import CheckResult, RunResults


@dataclass
class Unstable:
    id: str
    runs: list[tuple[str, CheckResult | None]]  # (run id, its result; None: not recorded in that run)


def unstable(runs: list[RunResults]) -> list[Unstable]:
    ids = list(dict.fromkeys(c.id for r in runs for c in r.checks))
    by_run = [{c.id: c for c in r.checks} for r in runs]
    out = []
    for cid in ids:
        seen = [(r.run_id, checks.get(cid)) for r, checks in zip(runs, by_run)]
        if len({c.status if c else None for _, c in seen}) > 1:
            out.append(Unstable(cid, seen))
    return out


def format_unstable(found: list[Unstable], k: int) -> str:
    if not found:
        return f"every check had the same verdict in all {k} runs"
    lines = [f"{len(found)} check(s) whose verdict differed across {k} runs:"]
    for u in found:
        verdicts = [c.status if c else "not recorded" for _, c in u.runs]
        counts = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
        lines.append(f"  {u.id} ({counts})")
        for run_id, c in u.runs:
            if c is None:
                lines.append(f"    {run_id}: not recorded (its notebook died before it)")
            else:
                lines.append(f"    {run_id}: {c.status:<7} {c.duration_s:7.2f}s{'  ' + c.message if c.message else ''}")
    return "\n".join(lines)
