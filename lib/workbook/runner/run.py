"""Headless runs for run_all.py: select notebooks (and a shard of them), execute them with
papermill in parallel on pre-started kernels, collect ledgers, write reports; `--repeat K`
does it K times on the same stacks and reports the checks whose verdict changed.

On an embedded env each parallel slot has a stack of its own (`slot_stack_dir`; its kernels
get `WORKBOOK_STACK_DIR`): a fault one notebook makes breaks nothing another runs on, and no
notebook waits for another's. `--shared-stack` runs every slot on the one stack, where the
per-service locks (workbook.stack.locks) keep faults and the checks they would break apart.

A notebook's ledger file is rewritten by its kernel after every check, so a notebook whose
kernel dies or is killed at the timeout still contributes every result it had.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from workbook.env import load_env, refuse_foreign_hosts
from workbook.params import Env
from workbook.paths import project_root
from workbook.checks import namespace
from workbook.errors import ConfigError, WorkbookError
from workbook.runner import console as say
from workbook.runner.execute import Job, Settings, execute, recorded
from workbook.runner.history import alone_times, read_history
from workbook.runner.kernels import KernelPool
from workbook.runner.leftovers import RunScope, owners, sweep
from workbook.runner.repeat import format_unstable, unstable
from workbook.runner.report import write_reports
from workbook.runner.secrets_scan import env_secrets
from workbook.runner.shard import ShardError, parse_shard, share
from workbook.runner.source import Source, source_of
from workbook.results import CheckResult, LeftoverReport, NotebookResult, RunResults, utcnow
from workbook.runner.selection import Notebook, check_ids, parse_patterns, select
from workbook.stack.lifecycle import StackLease
from workbook.stack.manager import Stack
from workbook.stack.state import STACK_DIR_VAR, slot_stack_dir

# jsonschema imports rfc3987_syntax, when installed, only to check "iri" string formats, which
# no notebook schema uses; building its grammar costs ~1.7 s per process, more than a trivial
# notebook. Marked unavailable before papermill (nbformat -> jsonschema) is imported.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


class UsageError(WorkbookError):
    """Bad command-line input: exit code 2."""


@dataclass
class RunOptions:
    env: str = "local"
    only: list[str] = field(default_factory=list)
    parallel: int = os.cpu_count() or 2
    timeout_s: float = 1800.0
    rerun_failed: bool = False
    keep_stack: bool = False
    shared_stack: bool = False  # every parallel slot on one embedded stack (default: one stack per slot)
    shard: str = ""  # "K/N"
    repeat: int = 1
    notebooks_dir: Path | None = None
    outputs_dir: Path | None = None


@dataclass
class Planned:
    name: str
    nb: Notebook


def discover(notebooks_dir: Path) -> list[Path]:
    return sorted(p for p in notebooks_dir.glob("*.ipynb") if p.stem[:2].isdigit())


def failed_patterns(outputs_dir: Path) -> list[str]:
    """Check ids (or whole notebooks, when one died outside its checks) that failed last run."""
    latest = outputs_dir / "latest" / "results.json"
    if not latest.is_file():
        raise UsageError(f"--rerun-failed: no previous run ({latest} does not exist)")
    last = RunResults.read(latest)
    patterns = [c.id for c in last.checks if c.status == "failed"]
    failed_ids = {c.notebook for c in last.checks if c.status == "failed"}
    patterns += [n.name for n in last.notebooks if n.status != "passed" and n.name not in failed_ids]
    return patterns


def plan(notebooks_dir: Path, patterns: list[str]) -> list[Planned]:
    out = []
    for path in discover(notebooks_dir):
        nb = json.loads(path.read_text())
        selected = select(nb, path.stem, patterns)
        if selected is not None:
            out.append(Planned(path.stem, selected))
    return out


class Runner:
    def __init__(self, opts: RunOptions, console: Console | None = None):
        self.opts = opts
        self.console = console or Console(soft_wrap=True)
        root = project_root()
        self.root = root
        self.notebooks_dir = opts.notebooks_dir or root / "notebooks"
        self.outputs_dir = opts.outputs_dir or root / "outputs"
        self.run_dir = Path()
        self.env: Env | None = None
        self.envs: list[Env] = []  # one per stack, the first is `env`
        self.stack_dirs: list[Path | None] = [None]  # each slot's stack (None: the default one)
        self._stop = threading.Event()
        self._stack_start_s = 0.0

    def run(self) -> int:
        try:
            return self._run()
        except (UsageError, ConfigError, ShardError) as e:
            self.console.print(f"[red]error:[/] {e}", highlight=False)
            return 2
        except WorkbookError as e:
            self.console.print(f"[red]error:[/] {e}", highlight=False)
            return 1

    def _run(self) -> int:
        opts = self.opts
        if opts.parallel < 1:
            raise UsageError("--parallel must be at least 1")
        if opts.timeout_s <= 0:
            raise UsageError("--timeout must be positive")
        if opts.repeat < 1:
            raise UsageError("--repeat must be at least 1")
        shard = parse_shard(opts.shard) if opts.shard else None
        patterns = parse_patterns(opts.only)
        if opts.rerun_failed:
            patterns = failed_patterns(self.outputs_dir)
            if not patterns:
                self.console.print("nothing failed in the last run: nothing to rerun")
                return 0
            self.console.print(f"rerunning {len(patterns)} failed item(s): {', '.join(patterns)}")
        planned = plan(self.notebooks_dir, patterns)
        if not planned:
            raise UsageError(f"no notebook or check matches --only {','.join(patterns)} in {self.notebooks_dir}")
        if shard is not None:
            history = read_history(self.outputs_dir / "history.jsonl")
            counts = {p.name: max(1, len(check_ids(p.nb, p.name))) for p in planned}
            mine = share(shard, counts, history, opts.env)
            self.console.print(f"shard {shard}: {len(mine)} of {len(planned)} notebooks"
                               f"{': ' + ', '.join(mine) if mine else ''}", highlight=False)
            planned = [p for p in planned if p.name in mine]
            if not planned:
                return 0
        # papermill (through nbformat's jsonschema) takes ~2 s to import: let it load while
        # the stack and the first kernels start.
        importer = threading.Thread(target=importlib.import_module, args=("papermill",), daemon=True)
        importer.start()
        leases = self._leases(min(opts.parallel, len(planned)))
        source = source_of(self.root)
        try:
            t0 = time.monotonic()
            self._up(leases)
            self._stack_start_s = time.monotonic() - t0
            self.envs = [load_env(opts.env, stack_dir=d) for d in self.stack_dirs]
            self.env = self.envs[0]
            for env in self.envs:
                refuse_foreign_hosts(env)
            runs: list[RunResults] = []
            for i in range(opts.repeat):
                if opts.repeat > 1:
                    self.console.print(f"[bold]run {i + 1} of {opts.repeat}[/]")
                runs.append(self._execute(planned, patterns, source, str(shard or "")))
                if self._stop.is_set():
                    return 1
        finally:
            for lease in leases:
                lease.release()
        if opts.repeat == 1:
            return 0 if runs[0].green else 1
        found = unstable(runs)
        self.console.print(format_unstable(found, opts.repeat), highlight=False)
        return 1 if found or not runs[-1].green else 0

    def _leases(self, slots: int) -> list[StackLease]:
        """A lease on each slot's stack: one per slot on an embedded env, unless --shared-stack."""
        first = StackLease(self.opts.env, keep=self.opts.keep_stack, say=self.console.print)
        if first.stack is None or self.opts.shared_stack or slots == 1:
            self.stack_dirs = [None]
            return [first]
        leases = [first]
        for slot in range(2, slots + 1):
            base = slot_stack_dir(self.root, slot)
            leases.append(StackLease(self.opts.env, keep=self.opts.keep_stack, stack=Stack(base=base),
                                     say=lambda line, b=base: self.console.print(f"{b.name}: {line}", highlight=False)))
        self.stack_dirs = [lease.stack.paths.base if lease.stack else None for lease in leases]
        return leases

    def _up(self, leases: list[StackLease]) -> None:
        """Bring the stacks up side by side; the first failure is raised once all have tried."""
        with ThreadPoolExecutor(len(leases)) as starting:
            for f in [starting.submit(lease.up) for lease in leases]:
                f.result()

    def _new_run_dir(self) -> Path:
        assert self.env is not None
        run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{self.env.name}"
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        run_dir, suffix = self.outputs_dir / run_id, 1
        while True:
            try:
                run_dir.mkdir()  # atomic: of two runs started in the same second, one gets "-2"
                return run_dir
            except FileExistsError:
                suffix += 1
                run_dir = self.outputs_dir / f"{run_id}-{suffix}"

    def _execute(self, planned: list[Planned], patterns: list[str], source: Source, shard: str) -> RunResults:
        assert self.env is not None
        self.run_dir = self._new_run_dir()
        run_id = self.run_dir.name
        parallel = min(self.opts.parallel, len(planned))
        results = RunResults(run_id=run_id, env=self.env.name, started_at=utcnow(), only=patterns,
                             commit=source.commit, dirty=source.dirty, tree=source.tree, shard=shard,
                             parallel=parallel, stack_start_s=round(self._stack_start_s, 3),
                             stacks=len(self.stack_dirs))
        self._stack_start_s = 0.0  # a --repeat's later runs find the stack up
        secrets = self._secrets()
        settings = Settings(env=self.env.name, run_id=run_id, cwd=self.notebooks_dir, timeout_s=self.opts.timeout_s,
                            secrets=list(secrets.values()))
        logging.getLogger("papermill").setLevel(logging.WARNING)

        # A pool per stack, whose kernels find that stack; a slot is a stack and takes its kernels.
        pools = [KernelPool(total=len(planned), prefetch=parallel + 1 if len(self.stack_dirs) == 1 else 2,
                            cwd=self.notebooks_dir, env={STACK_DIR_VAR: str(d)} if d else None)
                 for d in self.stack_dirs]
        free: queue.Queue[int] = queue.Queue()
        for slot in range(parallel):
            free.put(slot % len(pools))

        def on_a_slot(p: Planned) -> NotebookResult:
            slot = free.get()
            try:
                return execute(self._job(p), pools[slot], settings, self._stop)
            finally:
                free.put(slot)

        ex = ThreadPoolExecutor(parallel)
        futures: dict[Future[NotebookResult], Planned] = {}
        t0 = time.monotonic()
        try:
            with self._progress() as progress:
                task = progress.add_task("notebooks", total=len(planned), counts="")
                futures.update({ex.submit(on_a_slot, p): p for p in planned})
                pending = set(futures)
                while pending:
                    done = {f for f in pending if f.done()}
                    for f in done:
                        nb_result = f.result()
                        results.notebooks.append(nb_result)
                        progress.advance(task)
                        say.notebook_line(progress.console, nb_result, self._ledger(nb_result.name))
                    pending -= done
                    progress.update(task, counts=self._live_counts([futures[f].name for f in futures]))
                    time.sleep(0.1)
        except KeyboardInterrupt:
            # Running notebooks end with their kernels; queued ones never start.
            self._stop.set()
            for pool in pools:
                pool.kill_all()
            self.console.print("[yellow]interrupted: writing the results gathered so far[/]")
            ex.shutdown(wait=True, cancel_futures=True)
            finished = {n.name for n in results.notebooks}
            for f, p in futures.items():
                if p.name in finished:
                    continue
                if f.done() and not f.cancelled():
                    results.notebooks.append(f.result())
                else:
                    results.notebooks.append(NotebookResult(name=p.name, status="error", duration_s=0,
                                                            error="not run: interrupted"))
        finally:
            ex.shutdown(wait=True)
            for pool in pools:
                pool.close()

        names = [p.name for p in planned]
        results.notebooks.sort(key=lambda n: names.index(n.name))
        results.checks = [c for n in names for c in self._ledger(n)]
        results.finished_at = utcnow()
        results.duration_s = round(time.monotonic() - t0, 3)
        if not self._stop.is_set():
            results.leftovers = self._sweep(run_id, results)
        alone = alone_times([e for e in read_history(self.outputs_dir / "history.jsonl") if e.run_id != run_id],
                            self.env.name)
        paths = write_reports(results, self.run_dir, self.outputs_dir, secrets)
        say.summary(self.console, results, self.run_dir, paths.report_html, parallel, self._stop.is_set(), alone)
        return results

    def _secrets(self) -> dict[str, str]:
        """Every stack's secrets, each stack's under its own names."""
        found: dict[str, str] = {}
        for i, env in enumerate(self.envs):
            found.update({f"{name}@{i + 1}" if i else name: value for name, value in env_secrets(env).items()})
        return found

    def _sweep(self, run_id: str, results: RunResults) -> LeftoverReport:
        """What the run left in the stores (workbook.runner.leftovers) of every stack, named by check."""
        self.console.print("sweeping the stores for leftovers ...", highlight=False)
        checks = [(c.id, c.section, c.check) for c in results.checks]
        scope = RunScope(prefix=namespace(run_id), owners=owners(run_id, checks, [n.name for n in results.notebooks]))
        return LeftoverReport.combined([sweep(env, scope) for env in self.envs])

    def _job(self, p: Planned) -> Job:
        return Job(name=p.name, nb=p.nb, out=self.run_dir / f"{p.name}.ipynb")

    def _progress(self) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                        console=self.console, transient=True)

    def _ledger(self, name: str) -> list[CheckResult]:
        return recorded(Job(name=name, nb={}, out=self.run_dir / f"{name}.ipynb"))

    def _live_counts(self, names: list[str]) -> str:
        checks = [c for n in names for c in self._ledger(n)]
        passed = sum(c.status == "passed" for c in checks)
        failed = sum(c.status == "failed" for c in checks)
        return f"[green]{passed} passed[/] [red]{failed} failed[/]"
