"""`--shard K/N`: run a stable, duration-balanced share of the notebooks; `--merge`: join the
shards' results into one run.

The unit is the whole notebook, not the check: a notebook's checks share its setup cell
(imports, env, clients), which a check-level split would run once per shard, and a check
may rely on the state of the cells before it; and whole notebooks keep each executed notebook
one readable document. Notebooks are weighed by their durations in earlier full runs of the
env (the median of the last few; a notebook never seen weighs its check count times the
median seconds per check) and dealt largest first to the lightest shard (LPT). Shard runs and
`--only` runs never feed the weights, so shards that run one after the other on one machine
(each appending to the history) still compute the same split: every notebook in exactly one
shard.
"""

from __future__ import annotations

import re
import shutil
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workbook.errors import WorkbookError
from workbook.results import LeftoverReport, RunResults
from workbook.runner.history import HistoryEntry

WEIGHT_RUNS = 5
DEFAULT_CHECK_S = 1.0
REPORT_FILES = ("results.json", "junit.xml", "report.html")


class ShardError(WorkbookError):
    """A bad --shard or --merge request: a usage error."""


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ShardError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 1/2")
    return Shard(int(m.group(1)), int(m.group(2)))


def weights(notebooks: dict[str, int], history: list[HistoryEntry], env: str) -> dict[str, float]:
    """Expected seconds per notebook; `notebooks` maps each name to its number of check cells."""
    full = [e for e in history if e.env == env and not e.shard and not e.only]
    seen: dict[str, list[float]] = {}
    for e in full:
        for name, seconds in e.notebooks.items():
            seen.setdefault(name, []).append(seconds)
    per_check = [seen[n][-1] / max(1, notebooks[n]) for n in notebooks if n in seen]
    check_s = statistics.median(per_check) if per_check else DEFAULT_CHECK_S
    return {n: statistics.median(seen[n][-WEIGHT_RUNS:]) if n in seen else max(1, checks) * check_s
            for n, checks in notebooks.items()}


def assign(weight: dict[str, float], count: int) -> list[list[str]]:
    """Heaviest first, each to the lightest shard (ties: the lower index); deterministic."""
    shards: list[list[str]] = [[] for _ in range(count)]
    load = [0.0] * count
    for name in sorted(weight, key=lambda n: (-weight[n], n)):
        i = min(range(count), key=lambda k: (load[k], k))
        shards[i].append(name)
        load[i] += weight[name]
    return shards


def share(shard: Shard, notebooks: dict[str, int], history: list[HistoryEntry], env: str) -> list[str]:
    """The notebooks shard K of N runs, in their usual order."""
    mine = set(assign(weights(notebooks, history, env), shard.count)[shard.index - 1])
    return [n for n in notebooks if n in mine]


def merge(run_dirs: list[Path], into: Path) -> RunResults:
    """One run from shards' run directories: their results joined, their executed notebooks and
    ledgers copied into `into` (reports are written by the caller)."""
    if len(run_dirs) < 2:
        raise ShardError("--merge needs at least two run directories")
    parts = []
    for d in run_dirs:
        if not (d / "results.json").is_file():
            raise ShardError(f"--merge: {d} has no results.json")
        parts.append(RunResults.read(d / "results.json"))
    envs = {p.env for p in parts}
    if len(envs) > 1:
        raise ShardError(f"--merge: the runs are of different envs ({', '.join(sorted(envs))})")
    trees = {p.tree for p in parts}
    if len(trees) > 1:
        raise ShardError("--merge: the runs were made from different code: "
                         + ", ".join(f"{p.run_id} at {p.commit[:10] or 'unknown'}" for p in parts))
    owner: dict[str, str] = {}
    for p in parts:
        for n in p.notebooks:
            if n.name in owner:
                raise ShardError(f"--merge: notebook {n.name} is in both {owner[n.name]} and {p.run_id}")
            owner[n.name] = p.run_id
    into.mkdir(parents=True, exist_ok=True)
    for d in run_dirs:
        for path in sorted(d.iterdir()):
            if path.is_file() and path.name not in REPORT_FILES:
                shutil.copy2(path, into / path.name)
    first = parts[0]
    started = min(p.started_at for p in parts)
    finished = max(p.finished_at or p.started_at for p in parts)
    merged = RunResults(
        run_id=into.name, env=first.env, started_at=started, finished_at=finished,
        duration_s=round((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds(), 3),
        only=sorted({o for p in parts for o in p.only}),
        notebooks=sorted((n for p in parts for n in p.notebooks), key=lambda n: n.name),
        commit=first.commit, dirty=first.dirty, tree=first.tree,
        merged_from=[p.run_id for p in parts],
    )
    swept = [p.leftovers for p in parts if p.leftovers is not None]
    merged.leftovers = LeftoverReport.combined(swept) if swept else None
    order = {n.name: i for i, n in enumerate(merged.notebooks)}
    merged.checks = sorted((c for p in parts for c in p.checks), key=lambda c: order.get(c.notebook, len(order)))
    return merged
