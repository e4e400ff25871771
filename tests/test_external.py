"""The staging path, rehearsed: `--env external` (params/external.yaml: `stack: external`,
`destructive: false`) against a stack started separately, as a deployed staging is, with its
endpoints and passwords exported by `python -m workbook.stack env` and nothing read from the
stack's state. Every notebook runs green, fault and destructive checks are skipped saying why,
nothing is left in the stores, and no process of the stack is stopped or restarted by the run.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from tests_support import REPO

from workbook.results import RunResults
from workbook.stack.manager import Stack

NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# What a check may be skipped for here, each a reason the check gives: the env refuses destructive
# checks (granting roles writes to auth's database), faults and exclusive holds need the embedded
# stack, and a stack's processes are not ours to inspect. params/external.yaml names the core
# services only, as a staging env would: no test mailbox, no second model provider, Redis as a
# plain URL, and the stack's files (WAL archive, logs) are not on the machine. A check that
# builds on one of those skips with the one before it. Any other skip is a check that gave up
# on a stack it should have run against.
SKIP_REASONS = ("refuses destructive checks", "(destructive envs only)",
                "needs the embedded stack with destructive: true", "is not the embedded stack",
                "has no test mailbox (services.mail)", "has no second provider (services.llm_user)",
                "(no Sentinel in params)", "needs the embedded stack's WAL archive", "logs are not on this machine",
                "(the check before was skipped or failed)")


def exports() -> dict[str, str]:
    """`eval "$(python -m workbook.stack env)"`, as the README says, read into a dict."""
    out = subprocess.run([sys.executable, "-m", "workbook.stack", "env"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        found[name] = shlex.split(value)[0]
    return found


def processes() -> dict[str, tuple[int, float]]:
    return {name: (svc.pid, svc.create_time) for name, svc in Stack(REPO).state().services.items()}


@pytest.mark.usefixtures("embedded_stack")
def test_every_notebook_is_green_against_a_stack_the_workbook_did_not_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "WORKBOOK_EXTERNAL_"))}
    env.update(exports(), COLUMNS="1000")  # one line per path in the summary it prints
    before = processes()
    done = subprocess.run([sys.executable, "run_all.py", "--env", "external"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    out = done.stdout + done.stderr
    report = next(line for line in out.splitlines() if line.startswith("report: "))
    run_dir = Path(report.removeprefix("report: ")).parent
    results = RunResults.read(run_dir / "results.json")
    assert results.env == "external", out
    failed = [(c.id, c.message) for c in results.checks if c.status == "failed"]
    assert done.returncode == 0 and not failed, (failed, out[-4000:])
    assert sorted(n.name for n in results.notebooks) == NOTEBOOKS
    assert all(n.status == "passed" for n in results.notebooks), results.notebooks
    skipped = [c for c in results.checks if c.status == "skipped"]
    assert skipped, "an env with destructive: false skipped nothing: faults ran against a stack it did not start"
    unexplained = [(c.id, c.message) for c in skipped if not any(r in c.message for r in SKIP_REASONS)]
    assert not unexplained, unexplained
    assert results.leftovers is not None and results.leftovers_found == 0, results.leftovers
    assert [s.swept for s in results.leftovers.stores] == [True, True, True], results.leftovers.stores
    assert json.loads((run_dir / "results.json").read_text())["secrets_found"] == 0
    assert processes() == before, "the run stopped or restarted a service of a stack it did not start"
