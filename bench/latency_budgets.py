"""Latency budgets against what the checks measured here: is each budget set from data?

    python run_all.py --env local --repeat 20
    python bench/latency_budgets.py [--runs 20 | --run outputs/RUN ...] [--margin 2] [--floor 100] [--env local]

Reads the newest `--runs` whole-workbook runs' results.json of the env under outputs/ (runs of a
selection are left out: a check timed beside other notebooks is slower than one timed alone, and
the budgets must hold in the full run) and, for every figure a check recorded with a budget
(`ck.measure(name, value, budget=...)`), prints how many runs measured it, their median and
worst, the budget, and the budget the rule gives: `margin` times the worst of the runs, never
under `floor` ms (below it one figure is mostly the scheduler's: a single timing of a 15 ms
request reached 37 ms here with nothing wrong), up to two significant figures. Two
verdicts per figure:

- **tight**: the budget is under the rule's: a fluke on this machine can fail the check;
- **blind**: the budget is over 5 x the median: the platform could get five times slower here
  and the check would stay green.

A measured budget is right when it is neither. Bounds (a breaker that does not wait for its
peer, a recovery deadline) are not set by this rule and their verdicts mean nothing: params
says which budgets are bounds. The budget itself lives in params (written once); this script
only says what the measurements support.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLOWDOWN = 5  # the slowdown a budget must catch


@dataclass
class Figure:
    check: str
    name: str
    unit: str
    budget: float
    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def worst(self) -> float:
        return max(self.values)

    def proposed(self, margin: float, floor: float) -> float:
        return round_up(max(margin * self.worst, floor if self.unit == "ms" else 0.0))

    def verdict(self, margin: float, floor: float) -> str:
        if self.budget < self.proposed(margin, floor):
            return "tight"
        if self.budget > SLOWDOWN * self.median:
            return "blind"
        return "ok"


def round_up(x: float) -> float:
    """Up to two significant figures: budgets people can read (2900, not 2873.4)."""
    if x <= 0:
        return 0.0
    step = 10 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / step) * step


def runs(outputs: Path, env: str, newest: int, chosen: list[Path]) -> list[dict]:
    found = []
    for path in [d / "results.json" for d in chosen] or outputs.glob("*/results.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("env") == env and not data.get("only"):
            found.append(data)
    return sorted(found, key=lambda r: r["started_at"])[-newest:]


def figures(results: list[dict]) -> list[Figure]:
    by_key: dict[tuple[str, str], Figure] = {}
    seen: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in results:
        for check in run["checks"]:
            for m in check.get("measurements", []):
                if m.get("budget") is None:
                    continue
                key = (check["id"], m["name"])
                seen[key].append(m["value"])
                by_key[key] = Figure(check["id"], m["name"], m["unit"], m["budget"], seen[key])
    return sorted(by_key.values(), key=lambda f: (f.check, f.name))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="the newest N whole-workbook runs of the env (default 20)")
    ap.add_argument("--margin", type=float, default=2.0, help="budget = margin x the worst run (default 2)")
    ap.add_argument("--floor", type=float, default=100.0, help="never under this many ms (default 100)")
    ap.add_argument("--run", type=Path, action="append", default=[], metavar="RUN_DIR",
                    help="these run directories (repeat) instead of the newest --runs")
    ap.add_argument("--env", default="local")
    ap.add_argument("--outputs", type=Path, default=REPO / "outputs")
    args = ap.parse_args()
    results = runs(args.outputs, args.env, len(args.run) or args.runs, args.run)
    if not results:
        print(f"no whole-workbook results.json of env {args.env!r} under {args.outputs}: run the workbook first")
        return 1
    found = figures(results)
    print(f"{len(results)} runs of env {args.env} ({results[0]['run_id']} .. {results[-1]['run_id']}), "
          f"margin {args.margin:g}x the worst (at least {args.floor:g} ms), blind past {SLOWDOWN}x the median\n")
    print(f"{'check / figure':<92} {'runs':>4} {'median':>9} {'worst':>9} {'budget':>9} {'rule':>9}  verdict")
    for f in found:
        label = f"{f.check} / {f.name}"
        print(f"{label[-92:]:<92} {len(f.values):>4} {f.median:>9.1f} {f.worst:>9.1f} {f.budget:>9g} "
              f"{f.proposed(args.margin, args.floor):>9g}  {f.verdict(args.margin, args.floor)} ({f.unit})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
