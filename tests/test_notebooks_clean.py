"""The committed notebooks follow the workbook's conventions (cheap to check, costly to miss)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from workbook.selection import check_ids

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
    assert sources[-1].strip() == "summary()", "last cell must be summary()"


def test_check_ids_unique(notebook: tuple[str, dict]) -> None:
    name, nb = notebook
    ids = [cid for _, cid in check_ids(nb, name)]
    assert ids, "a notebook without checks"
    assert not [cid for cid, n in Counter(ids).items() if n > 1], "duplicate check ids"
