"""Headless runs for run_all.py: select notebooks, execute them with papermill in parallel on
pre-started kernels, enforce a whole-notebook timeout, collect ledgers, write reports.

A notebook's ledger file is rewritten by its kernel after every check, so a notebook whose
kernel dies or is killed at the timeout still contributes every result it had.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from workbook.env import load_env
from workbook.params import Env
from workbook.paths import project_root
from workbook.errors import ConfigError, WorkbookError
from workbook.runner.kernels import KernelPool
from workbook.runner.report import write_reports
from workbook.results import CheckResult, NotebookLedger, NotebookResult, RunResults, utcnow
from workbook.runner.selection import Notebook, check_ids, parse_patterns, select
from workbook.stack.lifecycle import StackLease

REDACTED = "[redacted]"

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


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) a kernel process used so far; 0 if it is gone."""
    if pid is None:
        return 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def scrub(path: Path, secrets: list[str]) -> None:
    """Remove any secret value that reached an output file (a check that printed one)."""
    if not secrets or not path.is_file():
        return
    text = path.read_text()
    clean = text
    for s in secrets:
        clean = clean.replace(s, REDACTED)
    if clean != text:
        path.write_text(clean)


class Runner:
    def __init__(self, opts: RunOptions, console: Console | None = None):
        self.opts = opts
        self.console = console or Console(soft_wrap=True)
        root = project_root()
        self.notebooks_dir = opts.notebooks_dir or root / "notebooks"
        self.outputs_dir = opts.outputs_dir or root / "outputs"
        self.run_dir = Path()
        self.env: Env | None = None
        self._stop = threading.Event()

    def run(self) -> int:
        try:
            return self._run()
        except (UsageError, ConfigError) as e:
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
        # papermill (through nbformat's jsonschema) takes ~2 s to import: let it load while
        # the stack and the first kernels start.
        importer = threading.Thread(target=importlib.import_module, args=("papermill",), daemon=True)
        importer.start()
        lease = StackLease(opts.env, keep=opts.keep_stack, say=self.console.print)
        try:
            lease.up()
            self.env = load_env(opts.env)
            return self._execute(planned, patterns)
        finally:
            lease.release()

    def _execute(self, planned: list[Planned], patterns: list[str]) -> int:
        assert self.env is not None
        started_at = datetime.now(timezone.utc)
        run_id = f"{started_at:%Y%m%dT%H%M%S}-{self.env.name}"
        self.run_dir = self.outputs_dir / run_id
        suffix = 1
        while self.run_dir.exists():
            suffix += 1
            self.run_dir = self.outputs_dir / f"{run_id}-{suffix}"
        self.run_dir.mkdir(parents=True)
        run_id = self.run_dir.name
        results = RunResults(run_id=run_id, env=self.env.name, started_at=utcnow(), only=patterns)
        parallel = min(self.opts.parallel, len(planned))
        logging.getLogger("papermill").setLevel(logging.WARNING)

        pool = KernelPool(total=len(planned), prefetch=parallel + 1, cwd=self.notebooks_dir)
        ex = ThreadPoolExecutor(parallel)
        futures: dict[Future[NotebookResult], Planned] = {}
        t0 = time.monotonic()
        try:
            with self._progress() as progress:
                task = progress.add_task("notebooks", total=len(planned), counts="")
                futures.update({ex.submit(self._execute_one, p, run_id, pool): p for p in planned})
                pending = set(futures)
                while pending:
                    done = {f for f in pending if f.done()}
                    for f in done:
                        nb_result = f.result()
                        results.notebooks.append(nb_result)
                        progress.advance(task)
                        self._print_notebook(progress.console, nb_result)
                    pending -= done
                    progress.update(task, counts=self._live_counts([futures[f].name for f in futures]))
                    time.sleep(0.1)
        except KeyboardInterrupt:
            # Running notebooks end with their kernels; queued ones never start.
            self._stop.set()
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
            pool.close()

        names = [p.name for p in planned]
        results.notebooks.sort(key=lambda n: names.index(n.name))
        results.checks = [c for n in names for c in self._ledger(n)]
        results.finished_at = utcnow()
        results.duration_s = round(time.monotonic() - t0, 3)
        paths = write_reports(results, self.run_dir, self.outputs_dir)
        self._print_summary(results, paths.report_html)
        return 0 if results.ok and not self._stop.is_set() else 1

    def _progress(self) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                        console=self.console, transient=True)

    def _ledger(self, name: str) -> list[CheckResult]:
        path = self.run_dir / f"{name}.results.json"
        try:
            return NotebookLedger.read(path).checks if path.is_file() else []
        except ValueError:
            return []

    def _live_counts(self, names: list[str]) -> str:
        checks = [c for n in names for c in self._ledger(n)]
        passed = sum(c.status == "passed" for c in checks)
        failed = sum(c.status == "failed" for c in checks)
        return f"[green]{passed} passed[/] [red]{failed} failed[/]"

    def _execute_one(self, p: Planned, run_id: str, pool: KernelPool) -> NotebookResult:
        import nbformat
        import papermill
        from papermill.exceptions import PapermillExecutionError

        assert self.env is not None
        out = self.run_dir / f"{p.name}.ipynb"
        ledger_path = self.run_dir / f"{p.name}.results.json"
        if self._stop.is_set():
            return NotebookResult(name=p.name, status="error", duration_s=0, error="run interrupted")
        t0 = time.monotonic()
        km = pool.take()
        timed_out = threading.Event()

        def on_timeout() -> None:
            timed_out.set()
            KernelPool.kill(km)

        timer = threading.Timer(self.opts.timeout_s, on_timeout)
        timer.daemon = True
        timer.start()
        status, error = "passed", ""
        try:
            papermill.execute_notebook(
                nbformat.from_dict(p.nb), str(out), kernel_name="python3", km=km, progress_bar=False,
                parameters={"env": self.env.name, "run_id": run_id, "ledger_path": str(ledger_path)},
                request_save_on_cell_execute=True, cwd=str(self.notebooks_dir),
            )
        except PapermillExecutionError as e:
            status = "failed"
            if e.ename != "ChecksFailed":  # a failed summary is told by its checks
                error = f"cell {e.exec_count}: {e.ename}: {str(e.evalue).splitlines()[0] if e.evalue else ''}"
        except Exception as e:
            status, error = "error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        finally:
            timer.cancel()
            cpu_s = _cpu_seconds(KernelPool.pid(km))
            pool.release(km)
        if self._stop.is_set() and status != "passed":
            error = f"interrupted (Ctrl-C) after {len(self._ledger(p.name))} recorded check(s)"
        if status == "passed" and check_ids(p.nb, p.name) and not self._ledger(p.name):
            # The kernel ran, yet recorded nothing: the ledger path never reached it.
            status, error = "error", ("no check was recorded: is the first code cell tagged 'parameters' "
                                      "(papermill injects the ledger path after it)?")
        if timed_out.is_set():
            status = "timeout"
            error = (f"notebook exceeded --timeout {self.opts.timeout_s:g}s; kernel killed after "
                     f"{len(self._ledger(p.name))} recorded check(s)")
        self._finish_output(out, ledger_path, status)
        return NotebookResult(name=p.name, status=status, duration_s=round(time.monotonic() - t0, 3),
                              error=error, output=out.name if out.exists() else "", kernel_cpu_s=round(cpu_s, 2))

    def _finish_output(self, out: Path, ledger_path: Path, status: str) -> None:
        import nbformat

        secrets = [s.secret() for s in self.env.services.values() if s.secret()] if self.env else []
        scrub(ledger_path, secrets)
        if out.is_file():
            nb = nbformat.read(out, as_version=4)
            nb.metadata["workbook"] = {
                "status": status,
                "checks": [c.model_dump() for c in self._ledger(out.stem)],
            }
            nbformat.write(nb, out)
            scrub(out, secrets)

    def _print_notebook(self, console: Console, r: NotebookResult) -> None:
        mark = {"passed": "[green]PASS[/]", "failed": "[red]FAIL[/]"}.get(r.status, f"[red]{r.status.upper()}[/]")
        waited = sum(c.waited_s for c in self._ledger(r.name))
        # Where a notebook's time went: its kernel working (CPU), or waiting - on the platform's
        # answers and clocks, on its own start, and on other notebooks' faults (told apart).
        idle = max(0.0, r.duration_s - r.kernel_cpu_s)
        split = (f"{r.duration_s:.1f}s: working {r.kernel_cpu_s:.1f}s, waiting {idle:.1f}s, "
                 f"{waited:.1f}s of it behind other notebooks' faults")
        console.print(f"{mark} {r.name} ({split}){' - ' + r.error if r.error else ''}", highlight=False)

    def _print_summary(self, results: RunResults, html: Path) -> None:
        t = results.totals
        failed = [c for c in results.checks if c.status == "failed"]
        for c in failed[:50]:
            self.console.print(f"  [red]FAIL[/] {c.id}: {c.message}", highlight=False)
        if len(failed) > 50:
            self.console.print(f"  ... and {len(failed) - 50} more in {self.run_dir / 'results.json'}")
        verdict = ("[yellow]INTERRUPTED[/]" if self._stop.is_set()
                   else "[green]ALL PASSED[/]" if results.ok else "[red]FAILED[/]")
        self.console.print(
            f"{verdict}: {t.passed} passed, {t.failed} failed, {t.skipped} skipped; "
            f"{len(results.notebooks) - t.notebooks_failed}/{len(results.notebooks)} notebooks passed "
            f"in {results.duration_s:.1f}s", highlight=False)
        own = sum(n.duration_s for n in results.notebooks)
        if results.duration_s > 0 and len(results.notebooks) > 1:
            self.console.print(f"the notebooks' own times add up to {own:.1f}s: {own / results.duration_s:.1f}x "
                               f"from running {self.opts.parallel} at a time", highlight=False)
        self.console.print(f"report: {html}", highlight=False)
