"""Per-check pytest items for workbook notebooks under `pytest --nbmake` (loaded by
`workbook.pytest_plugin`).

nbmake makes one item per notebook: one red item for the whole of 01_auth, and `-k` can only
pick notebooks. A workbook notebook (one with papermill's `parameters` cell that imports
`workbook`) is collected here instead, as one item per check cell, named by its check id, plus
one `<notebook>.notebook` item for what happens outside the checks. nbmake keeps every other
notebook: a hook wrapper around `pytest_collect_file` drops nbmake's collector for the files
this plugin takes, so nothing runs twice and nbmake's options keep their meaning
(`--nbmake` turns notebook collection on, `--nbmake-timeout` bounds each cell).

The notebook executes once, when its first selected item runs, with only the selected checks
(`-k` and deselection decide; `workbook.runner.selection` drops the others' cells, as `--only`
does in run_all), through the runner's own execution (papermill on a forked IPC kernel, the
ledger, secrets scrubbed). Each item then reports its check from the ledger: passed, failed
with the check's message and traceback, skipped with its reason, or failed as "not recorded"
when the notebook died before it. The notebook item fails when the notebook failed outside
its checks (setup cell, dead kernel, timeout). As after a run_all run, every file the session's
notebooks wrote (outputs/pytest/<run>[-gwN]/) is scanned for the env's secrets at the end, and
the stores are swept for what the session's checks left behind (`workbook.runner.leftovers`); a
secret found (by file and encoding) or a leftover (by store and the checks that left it) is
listed in the terminal summary and fails the session.

Under pytest-xdist every item of a notebook must run on one worker, or the notebook would run
once per worker. With the default distribution (`load`, what `-n N` means) or `worksteal`,
this plugin's scheduler sends a notebook's items to one worker as one unit and spreads every
other test one by one, as `load` does; `loadscope` and `loadfile` group by file anyway, and
for `--dist loadgroup` the items carry an `xdist_group` mark per notebook.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ReprFileLocation, TerminalRepr, TerminalWriter
from nbmake.pytest_items import NotebookFile

from workbook.env import load_env, refuse_foreign_hosts
from workbook.errors import ConfigError, WorkbookError
from workbook.paths import project_root
from workbook.pytest_plugin import ensure_stack, workbook_env
from workbook.checks import namespace
from workbook.results import CheckResult, LeftoverReport, NotebookLedger, NotebookResult, SecretHit
from workbook.runner.execute import Job, Settings, execute, recorded
from workbook.runner.junit import failed_outside_checks
from workbook.runner.console import leftover_line, leftovers_line
from workbook.runner.kernels import KernelPool
from workbook.runner.leftovers import RunScope, owners, sweep
from workbook.runner.secrets_scan import env_secrets, scan
from workbook.runner.selection import Notebook, check_ids, select

NOTEBOOK_TIMEOUT_S = 1800.0  # a whole notebook, as run_all's default --timeout
_run_name = pytest.StashKey[str]()
_scan = pytest.StashKey[tuple[int, list[SecretHit], str]]()
_leftovers = pytest.StashKey[LeftoverReport]()


def is_workbook_notebook(nb: Notebook) -> bool:
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    tagged = any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    source = "".join("".join(c["source"]) if isinstance(c.get("source"), list) else c.get("source", "") for c in code)
    return tagged and ("from workbook import" in source or "import workbook" in source)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`load` (what `-n N` means) and `worksteal` would spread a notebook's items over workers."""
    if not getattr(config.option, "nbmake", False) or config.getvalue("dist") not in ("load", "worksteal"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class NotebookScheduling(LoadScopeScheduling):
        """A notebook's items are one unit of work; every other test is a unit of its own."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.endswith(".ipynb") else nodeid

    return NotebookScheduling(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    collected = yield
    if not getattr(parent.config.option, "nbmake", False) or file_path.suffix != ".ipynb":
        return collected
    try:
        nb = json.loads(file_path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return collected  # nbmake reports a broken file
    if not isinstance(nb, dict) or not is_workbook_notebook(nb):
        return collected
    ours = WorkbookNotebook.from_parent(parent, path=file_path)
    return [c for c in collected if not isinstance(c, NotebookFile)] + [ours]


def pytest_configure(config: pytest.Config) -> None:
    # One run name for the session, decided by the controlling process and handed to xdist's
    # workers, so the end-of-session secret scan finds every worker's directory.
    given = getattr(config, "workerinput", {}).get("workbook_run")
    config.stash[_run_name] = given or (f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{workbook_env()}"
                                        f"-pytest-{os.getpid()}")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput["workbook_run"] = node.config.stash[_run_name]


def _run_dir_for(config: pytest.Config) -> Path:
    """Where this process's executed notebooks and ledgers go (one directory per xdist worker)."""
    worker = getattr(config, "workerinput", {}).get("workerid", "")
    path = project_root() / "outputs" / "pytest" / (config.stash[_run_name] + (f"-{worker}" if worker else ""))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.hookimpl(tryfirst=True)  # before the stack this session started is stopped: the env needs it
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or _run_name not in config.stash:
        return
    base = project_root() / "outputs" / "pytest"
    dirs = sorted(base.glob(config.stash[_run_name] + "*")) if base.is_dir() else []
    if not dirs:
        return
    try:
        secrets = env_secrets(load_env(workbook_env()))
    except WorkbookError as e:
        config.stash[_scan] = (0, [], f"not scanned: the env's secrets cannot be resolved ({e})")
        return
    files = sorted(p for d in dirs for p in d.rglob("*") if p.is_file())
    count, hits = scan(base, files, secrets)
    config.stash[_scan] = (count, hits, "")
    report = sweep(load_env(workbook_env()), _session_scope(config.stash[_run_name], dirs))
    config.stash[_leftovers] = report
    if hits or report.total:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _session_scope(run_name: str, dirs: list[Path]) -> RunScope:
    """The session's namespace (each xdist worker's run id extends it) and every check its
    notebooks recorded, from their ledgers."""
    scope = RunScope(prefix=namespace(run_name), owners=[])
    for ledger in sorted(p for d in dirs for p in d.glob("*.results.json")):
        recorded_ = NotebookLedger.read(ledger)
        scope.owners += owners(recorded_.run_id, [(c.id, c.section, c.check) for c in recorded_.checks],
                               [recorded_.notebook])
    return scope


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _scan not in config.stash:
        return
    count, hits, note = config.stash[_scan]
    if note:
        terminalreporter.write_line(f"secret scan: {note}", yellow=True)
        return
    for h in hits:
        terminalreporter.write_line(f"SECRET {h.file}: {h.encoding} encoding of {h.secret}", red=True)
    terminalreporter.write_line(f"secret scan: {len(hits)} secrets found in {count} files written by notebooks",
                                red=bool(hits), green=not hits)
    if (report := config.stash.get(_leftovers, None)) is not None:
        for item in report.items:
            terminalreporter.write_line(f"LEFTOVER {leftover_line(item)}", red=True)
        terminalreporter.write_line(f"leftovers: {leftovers_line(report)}", red=bool(report.total),
                                    green=not report.total)


@dataclass
class Outcome:
    notebook: NotebookResult
    checks: dict[str, CheckResult]
    executed: Path


class WorkbookNotebook(pytest.File):
    outcome: Outcome | None = None
    check_ids: list[str] = []

    def collect(self) -> list[pytest.Item]:
        nb = json.loads(self.path.read_text(encoding="utf-8"))
        self.check_ids = [cid for _, cid in check_ids(nb, self.path.stem)]
        items: list[pytest.Item] = [CheckItem.from_parent(self, name=cid) for cid in self.check_ids]
        items.append(NotebookItem.from_parent(self, name=f"{self.path.stem}.notebook"))
        if self.config.pluginmanager.hasplugin("xdist"):
            for item in items:
                item.add_marker(pytest.mark.xdist_group(self.path.stem))
        return items

    def setup(self) -> None:
        """Run the notebook once, with the checks this session selected."""
        ensure_stack(self.config)
        name = self.path.stem
        source = json.loads(self.path.read_text(encoding="utf-8"))
        selected = [i.name for i in self.session.items if isinstance(i, CheckItem) and i.parent is self]
        # Only the notebook item selected: it stands for the whole notebook.
        nb = (select(source, name, selected) if selected else None) or source
        env = load_env(workbook_env())
        try:
            refuse_foreign_hosts(env)
        except ConfigError as e:
            pytest.exit(f"error: {e}", returncode=pytest.ExitCode.USAGE_ERROR)
        secrets = list(env_secrets(env).values())
        run_dir = _run_dir_for(self.config)
        job = Job(name=name, nb=nb, out=run_dir / f"{name}.ipynb")
        settings = Settings(env=env.name, run_id=run_dir.name, cwd=self.path.parent, timeout_s=NOTEBOOK_TIMEOUT_S,
                            secrets=secrets, cell_timeout_s=getattr(self.config.option, "nbmake_timeout", None))
        pool = KernelPool(total=1, prefetch=1, cwd=self.path.parent)
        try:
            result = execute(job, pool, settings)
        finally:
            pool.close()
        self.outcome = Outcome(result, {c.id: c for c in recorded(job)}, job.out)


class CheckFailed(Exception):
    """The check failed (or was never recorded); carries what pytest shows."""

    def __init__(self, message: str, detail: str):
        super().__init__(message)
        self.message = message
        self.detail = detail


class _Repr(TerminalRepr):
    def __init__(self, path: str, message: str, detail: str):
        self.reprcrash = ReprFileLocation(path, 0, message)
        self.detail = detail

    def toterminal(self, tw: TerminalWriter) -> None:
        tw.write(self.detail + "\n")


class _WorkbookItem(pytest.Item):
    parent: WorkbookNotebook

    def _outcome(self) -> Outcome:
        assert self.parent.outcome is not None, "the notebook did not execute"
        return self.parent.outcome

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CheckFailed):
            return _Repr(str(self.path), excinfo.value.message, excinfo.value.detail)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name


class CheckItem(_WorkbookItem):
    def runtest(self) -> None:
        out = self._outcome()
        c = out.checks.get(self.name)
        if c is None:
            nb = out.notebook
            why = nb.error or f"notebook {nb.status}"
            message = f"not recorded: the notebook stopped before it ({why})"
            raise CheckFailed(message, f"{message}\nexecuted notebook: {out.executed}")
        self.user_properties.append(("check_duration_s", f"{c.duration_s:.3f}"))
        for m in c.measurements:
            budget = f" (budget {m.budget:g})" if m.budget is not None else ""
            self.user_properties.append((f"measure:{m.name}", f"{m.value:g} {m.unit}{budget}"))
        if c.status == "skipped":
            # Located at the notebook, as a skip mark is, not at this line.
            raise pytest.skip.Exception(c.message or "skipped", _use_item_location=True)
        if c.status == "failed":
            raise CheckFailed(c.message, f"{c.message}\n\n{c.traceback}executed notebook: {out.executed}")


class NotebookItem(_WorkbookItem):
    def runtest(self) -> None:
        out = self._outcome()
        problems = []
        if failed_outside_checks(out.notebook):
            problems.append(out.notebook.error or f"notebook {out.notebook.status}")
        stray = [c for c in out.checks.values() if c.status == "failed" and c.id not in self.parent.check_ids]
        problems += [f"{c.id} (a check pytest did not collect): {c.message}" for c in stray]
        if problems:
            raise CheckFailed(problems[0], "\n".join(problems) + f"\nexecuted notebook: {out.executed}")
