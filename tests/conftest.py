"""Shared helpers for the workbook's own tests: throwaway project roots with tiny notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

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
    return write_notebook(path, setup, *checks, "summary()")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project root (params/local.yaml without services) that workbook uses."""
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "local.yaml").write_text("description: no services\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv("WORKBOOK_ROOT", str(tmp_path))
    return tmp_path
