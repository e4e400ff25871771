"""outputs/history.jsonl: one line per run, and what it tells across runs.

Each line keeps the run's totals, the code it ran (commit, dirty, tree) and every check's
status and duration, so trends need no run directory (those may be pruned). From it:

- a check's last N outcomes;
- **flaky**: a check that flipped between passed and failed across runs of the same code
  (same env, same `tree`): nothing changed but the outcome. Runs of unknown code never count;
- **slower**: a check whose newest duration is past `factor` times the median of its earlier
  ones (the last 20; and by more than `min_delta_s`, so a 2 ms check taking 5 ms is not news).

A run `--merge` made from shards supersedes the shards' own lines: their checks are counted
once, through the merged line.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from workbook.results import CheckStatus, RunResults

LAST_N = 10
SLOWER_FACTOR = 2.0
SLOWER_MIN_DELTA_S = 0.5
SLOWER_MIN_RUNS = 3  # earlier runs a median needs before "slower" means anything
SLOWER_WINDOW = 20  # earlier runs the median is taken over: what the check took lately, not a year ago
MARK = {"passed": "✓", "failed": "✗", "skipped": "-"}


class HistoryEntry(BaseModel):
    run_id: str
    env: str
    started_at: str
    duration_s: float
    passed: int
    failed: int
    skipped: int
    notebooks_failed: int
    run_dir: str  # relative to the outputs directory, so the tree can be moved
    commit: str = ""
    dirty: bool = False
    tree: str = ""
    shard: str = ""
    only: list[str] = []
    merged_from: list[str] = []
    secrets_found: int = 0
    checks: dict[str, tuple[CheckStatus, float]] = {}  # id -> (status, duration_s)
    notebooks: dict[str, float] = {}  # name -> duration_s (what sharding balances on)
    parallel: int = 0  # notebooks run at once; 0 in lines written before it was recorded


def entry_for(results: RunResults, run_dir: Path, outputs_dir: Path) -> HistoryEntry:
    return HistoryEntry(
        run_id=results.run_id, env=results.env, started_at=results.started_at, duration_s=results.duration_s,
        run_dir=os.path.relpath(run_dir, outputs_dir), commit=results.commit, dirty=results.dirty,
        tree=results.tree, shard=results.shard, only=results.only, merged_from=results.merged_from,
        secrets_found=len(results.secret_hits),
        checks={c.id: (c.status, round(c.duration_s, 3)) for c in results.checks},
        notebooks={n.name: round(n.duration_s, 3) for n in results.notebooks},
        parallel=results.parallel,
        **results.totals.model_dump(),
    )


def read_history(path: Path) -> list[HistoryEntry]:
    """Every readable entry, oldest first; a line cut short by a crash or edited by hand is
    skipped, and shards a merged run stands for are dropped."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entries.append(HistoryEntry.model_validate_json(line))
        except ValidationError:
            continue
    merged = {run_id for e in entries for run_id in e.merged_from}
    return [e for e in entries if e.run_id not in merged]


def alone_times(history: list[HistoryEntry], env: str) -> dict[str, float]:
    """Each notebook's time from the env's newest run where it had the machine to itself: run
    one at a time, or the only notebook. Runs of part of a notebook (`--only nb.section`), shards
    and notebooks that never ran (0 s) say nothing about a whole notebook's time."""
    alone: dict[str, float] = {}
    for e in sorted((e for e in history if e.env == env), key=lambda e: e.started_at):
        if e.shard or e.merged_from or any("." in pattern for pattern in e.only):
            continue
        if e.parallel == 1 or len(e.notebooks) == 1:
            alone.update({name: s for name, s in e.notebooks.items() if s > 0})
    return alone


def append_history(path: Path, entry: HistoryEntry) -> None:
    line = entry.model_dump_json() + "\n"
    with path.open("a+b") as f:
        # A writer killed mid-line left no newline; without one ours would be glued to its tail.
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))


@dataclass
class Outcome:
    run_id: str
    status: CheckStatus
    duration_s: float


@dataclass
class CheckTrend:
    id: str
    outcomes: list[Outcome] = field(default_factory=list)  # oldest first, every run of the env
    flips: int = 0  # passed<->failed changes between consecutive runs of the same code
    flip_runs: int = 0  # runs those flips were counted over
    flip_tree: str = ""  # the code the most flips happened on
    median_s: float = 0.0  # of the earlier durations
    factor: float = 0.0  # newest duration / median_s, when it is past the threshold

    @property
    def flaky(self) -> bool:
        return self.flips > 0

    @property
    def slower(self) -> bool:
        return self.factor > 0

    def last(self, n: int = LAST_N) -> list[Outcome]:
        return self.outcomes[-n:]

    def marks(self, n: int = LAST_N) -> str:
        return "".join(MARK[o.status] for o in self.last(n))


def trends(history: list[HistoryEntry], env: str, factor: float = SLOWER_FACTOR,
           min_delta_s: float = SLOWER_MIN_DELTA_S) -> dict[str, CheckTrend]:
    """Per check id, what the env's runs in `history` say about it."""
    runs = sorted((e for e in history if e.env == env), key=lambda e: e.started_at)
    out: dict[str, CheckTrend] = {}
    by_tree: dict[str, dict[str, list[CheckStatus]]] = defaultdict(lambda: defaultdict(list))
    for e in runs:
        for cid, (status, duration) in e.checks.items():
            out.setdefault(cid, CheckTrend(cid)).outcomes.append(Outcome(e.run_id, status, duration))
            if e.tree and status != "skipped":
                by_tree[cid][e.tree].append(status)
    for cid, trees in by_tree.items():
        t = out[cid]
        counted = {tree: _flips(statuses) for tree, statuses in trees.items()}
        for tree, flips in counted.items():
            if flips:
                t.flips += flips
                t.flip_runs += len(trees[tree])
        if t.flips:
            t.flip_tree = max(counted, key=lambda tree: counted[tree])
    for t in out.values():
        timed = [o.duration_s for o in t.outcomes if o.status != "skipped"]
        if len(timed) <= SLOWER_MIN_RUNS or t.outcomes[-1].status == "skipped":
            continue
        t.median_s = statistics.median(timed[:-1][-SLOWER_WINDOW:])
        newest = timed[-1]
        if newest > factor * t.median_s and newest - t.median_s >= min_delta_s:
            t.factor = newest / max(t.median_s, 0.001)  # a check that took no time at all before
    return out


def _flips(statuses: list[CheckStatus]) -> int:
    return sum(a != b for a, b in zip(statuses, statuses[1:]))


def format_history(history: list[HistoryEntry], envs: list[str], source: str, factor: float = SLOWER_FACTOR) -> str:
    """What `run_all.py --history` prints: per env, the flaky and the slowing checks."""
    if not history:
        return f"no runs in {source} yet"
    lines = []
    for env in envs:
        runs = [e for e in history if e.env == env]
        if not runs:
            lines.append(f"{env}: no runs in {source}")
            continue
        newest = runs[-1]
        code = newest.commit[:10] + ("+dirty" if newest.dirty else "") if newest.commit else "unknown commit"
        lines.append(f"{env}: {len(runs)} runs in {source}, newest {newest.run_id} ({code})")
        found = trends(history, env, factor=factor)
        flaky = sorted((t for t in found.values() if t.flaky), key=lambda t: (-t.flips, t.id))
        slower = sorted((t for t in found.values() if t.slower), key=lambda t: (-t.factor, t.id))
        width = max([len(t.id) for t in flaky + slower] or [0])
        lines.append(f"  flaky: {len(flaky)} (flipped between passed and failed on the same code)")
        for t in flaky:
            tree = t.flip_tree[:10] + ("+dirty" if "+" in t.flip_tree else "")
            lines.append(f"    {t.id:<{width}}  {t.flips} flip{'s' * (t.flips != 1)} in {t.flip_runs} runs "
                         f"of {tree}   last {LAST_N}: {t.marks()}")
        lines.append(f"  slower: {len(slower)} (newest duration past {factor:g}x its median)")
        for t in slower:
            lines.append(f"    {t.id:<{width}}  {t.outcomes[-1].duration_s:.2f}s vs median {t.median_s:.2f}s "
                         f"({t.factor:.1f}x)   last {LAST_N}: {t.marks()}")
    return "\n".join(lines)
