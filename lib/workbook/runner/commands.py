"""run_all's commands that read earlier runs instead of running notebooks: `--history`,
`--compare A B` and `--merge DIR...`. Each returns run_all's exit code."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from workbook.env import load_env
from workbook.errors import WorkbookError
from workbook.params import load_params
from workbook.results import RunResults
from workbook.runner import console as say
from workbook.runner.compare import RunNotFound, compare, format_comparison, resolve_run
from workbook.runner.history import SLOWER_FACTOR, format_history, read_history
from workbook.runner.report import write_reports
from workbook.runner.secrets_scan import env_secrets
from workbook.runner.shard import ShardError, merge
from workbook.stack.state import Paths


def show_history(outputs_dir: Path, env: str | None, console: Console, factor: float = SLOWER_FACTOR) -> int:
    """Print the flaky and the slowing checks per env (every env in the history unless `env`)."""
    path = outputs_dir / "history.jsonl"
    history = read_history(path)
    envs = [env] if env else list(dict.fromkeys(e.env for e in history))
    console.print(format_history(history, envs, str(path), factor=factor), highlight=False, markup=False)
    return 0


def show_compare(a: str, b: str, outputs_dir: Path, console: Console) -> int:
    """0 when every check has the same status in both runs, 1 when some differ, 2 for a bad reference."""
    try:
        run_a, run_b = (RunResults.read(resolve_run(ref, outputs_dir) / "results.json") for ref in (a, b))
    except RunNotFound as e:
        console.print(f"[red]error:[/] {e}", highlight=False)
        return 2
    cmp = compare(run_a, run_b)
    console.print(format_comparison(cmp), highlight=False, markup=False)
    return 1 if cmp.status else 0


def _secrets_of(env: str, console: Console) -> dict[str, str]:
    """The env's secrets, to scan the merged run for. A merge may happen where the env's stack is
    down: the embedded stack's generated passwords are then read from its secrets file."""
    try:
        return env_secrets(load_env(env))
    except WorkbookError as e:
        if load_params(env).stack == "embedded":
            path = Paths().secrets
            if path.is_file():
                return {f"services.{k}": v for k, v in json.loads(path.read_text()).items() if v}
        console.print(f"[yellow]warning:[/] cannot resolve env {env}'s secrets ({e}): the merged run is scanned "
                      "for none", highlight=False)
        return {}


def merge_runs(dirs: list[str], outputs_dir: Path, console: Console) -> int:
    """Join shards' runs into one run directory with results.json, junit.xml and report.html."""
    try:
        paths = [resolve_run(d, outputs_dir) for d in dirs]
        env = RunResults.read(paths[0] / "results.json").env
        into = outputs_dir / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{env}-merged"
        suffix = 1
        while into.exists():
            suffix += 1
            into = into.with_name(f"{into.name.rsplit('-merged', 1)[0]}-merged-{suffix}")
        results = merge(paths, into)
    except (RunNotFound, ShardError) as e:
        console.print(f"[red]error:[/] {e}", highlight=False)
        return 2
    written = write_reports(results, into, outputs_dir, _secrets_of(env, console))
    console.print(f"merged {len(paths)} runs: {', '.join(results.merged_from)}", highlight=False)
    say.summary(console, results, into, written.report_html, parallel=len(paths))
    return 0 if results.green else 1
