"""The committed notebooks follow the workbook's conventions (cheap to check, costly to miss)."""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from workbook.runner.selection import check_ids

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request: pytest.FixtureRequest) -> tuple[str, dict]:
    path: Path = request.param
    return path.stem, json.loads(path.read_text())


def code_sources(nb: dict) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]


def test_committed_without_outputs(notebook: tuple[str, dict]) -> None:
    _, nb = notebook
    dirty = [i for i, c in enumerate(nb["cells"]) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"cells {dirty} carry outputs: jupyter nbconvert --clear-output --inplace"


def test_parameters_setup_and_summary(notebook: tuple[str, dict]) -> None:
    name, nb = notebook
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), "first code cell must be tagged parameters"
    sources = code_sources(nb)
    assert f'setup("{name}"' in sources[1], "second code cell must call setup() with the notebook's own name"
    assert sources[-1].strip() == "await summary()", "last cell must be `await summary()`"


def test_check_ids_unique(notebook: tuple[str, dict]) -> None:
    name, nb = notebook
    ids = [cid for _, cid in check_ids(nb, name)]
    assert ids, "a notebook without checks"
    assert not [cid for cid, n in Counter(ids).items() if n > 1], "duplicate check ids"


def _section_index(sources: list[str]) -> int:
    return next((i for i, s in enumerate(sources) if re.search(r'^section\("', s, re.M)), len(sources))


def _code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def test_setup_is_a_few_lines(notebook: tuple[str, dict]) -> None:
    """What runs before the first section (the parameters cell aside) is imports and setup():
    helpers belong in lib/workbook, where every notebook can use them."""
    _, nb = notebook
    sources = code_sources(nb)[1:]  # the parameters cell is papermill's
    before = sum(_code_lines(s) for s in sources[:_section_index(sources)])
    assert before <= 20, f"{before} lines of code before the first section (at most 20)"


def _definitions(nb: dict) -> list[str]:
    names = []
    for source in code_sources(nb):
        # IPython's top-level await is not Python: compile each cell as the body of a coroutine.
        body = "async def __cell__():\n" + "\n".join("    " + line for line in source.splitlines())
        tree = ast.parse(body)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name != "__cell__":
                names.append(node.name)
    return names


def test_no_definition_twice_in_or_across_notebooks() -> None:
    """A name defined twice means cells run out of order behave differently, or two notebooks
    grew the same helper: it belongs in lib/workbook once."""
    where: dict[str, list[str]] = {}
    for path in NOTEBOOKS:
        for name in _definitions(json.loads(path.read_text())):
            where.setdefault(name, []).append(path.stem)
    twice = {name: stems for name, stems in where.items() if len(stems) > 1}
    assert not twice, f"defined more than once: {twice}"


def test_limits_come_typed_from_params(notebook: tuple[str, dict]) -> None:
    """Budgets and expectations are typed in workbook.params: a default in a notebook would
    hide a params file that forgot the key."""
    _, nb = notebook
    for source in code_sources(nb):
        assert not re.search(r"wb\.(expect|budgets|env)\b[\w.]*\.get\(", source), source[:200]
