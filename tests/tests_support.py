"""Helpers for the workbook's own tests: tiny notebooks, and the runner called as run_all does."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_notebook
from rich.console import Console

from workbook.runner.run import RunOptions, Runner


REPO_PARAMS = Path(__file__).resolve().parents[1] / "params"


def params_text(**changes: Any) -> str:
    """A complete params file (the repo's local.yaml: every budget and expectation) without the
    embedded stack or services, with `changes` applied at the top level."""
    data = yaml.safe_load((REPO_PARAMS / "local.yaml").read_text())
    data.update({"stack": "none", "services": {}, "description": "test env"})
    data.update(changes)
    return yaml.safe_dump(data)


PARAMS_CELL = 'env = "local"\nrun_id = ""\nledger_path = ""'


def write_notebook(path: Path, *cells: str) -> Path:
    """A notebook whose first cell is the papermill parameters cell, then `cells` as code."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = new_code_cell(PARAMS_CELL)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(new_code_cell(c) for c in cells)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def checks_notebook(path: Path, *checks: str, section: str = "basic") -> Path:
    """setup + section, one cell per check body, summary."""
    setup = (f'from workbook import setup, section, check, skip, summary\n'
             f'wb = setup("{path.stem}", env=env, run_id=run_id, ledger_path=ledger_path)\n'
             f'section("{section}")')
    return write_notebook(path, setup, *checks, "await summary()")


def run(**kw) -> int:
    kw.setdefault("parallel", 2)
    kw.setdefault("timeout_s", 120)
    return Runner(RunOptions(**kw), console=Console(soft_wrap=True)).run()


REPO = Path(__file__).resolve().parents[1]


def run_all(*argv: str) -> int:
    """run_all.py's main(), in this process (its output goes to pytest's capture)."""
    spec = importlib.util.spec_from_file_location("run_all", REPO / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(argv))


def git_project(root: Path) -> str:
    """Make `root` a git checkout with one commit (outputs/ and state/ ignored); its commit id."""
    (root / ".gitignore").write_text("outputs/\nstate/\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), "-c", "user.email=t@example.invalid", "-c", "user.name=t",
                               *args], check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "notebooks")
    return git("rev-parse", "HEAD")
