"""Execute one (selected) notebook with papermill on a pooled kernel: the part run_all and the
pytest plugin share.

papermill injects `env`, `run_id` and `ledger_path` after the cell tagged `parameters`; the
kernel rewrites the ledger after every check, so a notebook killed at its timeout, or whose
kernel died, still yields every result it recorded. Afterwards the ledger and the executed
notebook are scrubbed of the env's secrets (every common encoding) and the notebook gets the
ledger in its metadata.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from workbook.results import CheckResult, NotebookLedger, NotebookResult
from workbook.runner.kernels import KernelPool
from workbook.runner.secrets_scan import scrub_file, scrub_text
from workbook.runner.selection import Notebook, check_ids


@dataclass
class Job:
    name: str  # file stem, e.g. "00_preflight"
    nb: Notebook  # the notebook's JSON, unselected check cells already removed
    out: Path  # where the executed notebook goes; its ledger goes next to it


@dataclass
class Settings:
    env: str
    run_id: str
    cwd: Path  # the notebooks' directory: relative paths in a notebook resolve there
    timeout_s: float  # the whole notebook
    secrets: list[str]
    cell_timeout_s: float | None = None


def ledger_path(job: Job) -> Path:
    return job.out.with_name(f"{job.name}.results.json")


def recorded(job: Job) -> list[CheckResult]:
    path = ledger_path(job)
    try:
        return NotebookLedger.read(path).checks if path.is_file() else []
    except ValueError:
        return []


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) a kernel process used so far; 0 if it is gone."""
    if pid is None:
        return 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def execute(job: Job, pool: KernelPool, s: Settings, stop: threading.Event | None = None) -> NotebookResult:
    import nbformat
    import papermill

    from workbook.runner import engine
    from papermill.exceptions import PapermillExecutionError

    stop = stop or threading.Event()
    if stop.is_set():
        return NotebookResult(name=job.name, status="error", duration_s=0, error="run interrupted")
    t0 = time.monotonic()
    km = pool.take()
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        KernelPool.kill(km)

    timer = threading.Timer(s.timeout_s, on_timeout)
    timer.daemon = True
    timer.start()
    status, error = "passed", ""
    try:
        papermill.execute_notebook(
            nbformat.from_dict(job.nb), str(job.out), kernel_name="python3", km=km, progress_bar=False,
            parameters={"env": s.env, "run_id": s.run_id, "ledger_path": str(ledger_path(job))},
            request_save_on_cell_execute=True, engine_name=engine.NAME, cwd=str(s.cwd),
            execution_timeout=s.cell_timeout_s,
        )
    except PapermillExecutionError as e:
        status = "failed"
        # A failed summary is told by its failed checks; one with none to tell ("no check ran") is not.
        if e.ename != "ChecksFailed" or not any(c.status == "failed" for c in recorded(job)):
            error = f"cell {e.exec_count}: {e.ename}: {str(e.evalue).splitlines()[0] if e.evalue else ''}"
    except Exception as e:
        status, error = "error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        timer.cancel()
        cpu_s = _cpu_seconds(KernelPool.pid(km))
        pool.release(km)
    if stop.is_set() and status != "passed":
        error = f"interrupted (Ctrl-C) after {len(recorded(job))} recorded check(s)"
    if status == "passed" and check_ids(job.nb, job.name) and not recorded(job):
        # The kernel ran, yet recorded nothing: the ledger path never reached it.
        status, error = "error", ("no check was recorded: is the first code cell tagged 'parameters' "
                                  "(papermill injects the ledger path after it)?")
    if timed_out.is_set():
        status = "timeout"
        error = (f"notebook exceeded --timeout {s.timeout_s:g}s; kernel killed after "
                 f"{len(recorded(job))} recorded check(s)")
    _finish_output(job, status, s.secrets)
    return NotebookResult(name=job.name, status=status, duration_s=round(time.monotonic() - t0, 3),
                          error=scrub_text(error, s.secrets), output=job.out.name if job.out.exists() else "",
                          kernel_cpu_s=round(cpu_s, 2))


def _finish_output(job: Job, status: str, secrets: list[str]) -> None:
    import nbformat

    scrub_file(ledger_path(job), secrets)
    if job.out.is_file():
        nb = nbformat.read(job.out, as_version=4)
        nb.metadata["workbook"] = {"status": status, "checks": [c.model_dump() for c in recorded(job)]}
        nbformat.write(nb, job.out)
        scrub_file(job.out, secrets)
