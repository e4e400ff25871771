"""The README's "Adding a check" example is real code: it runs, as a notebook cell, against the
embedded stack and passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests_support import write_notebook

from workbook.results import RunResults
from workbook.runner.run import RunOptions, Runner

README = Path(__file__).resolve().parents[1] / "README.md"


def example() -> str:
    text = README.read_text()
    part = text[text.index("## Adding a check"):]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


@pytest.mark.usefixtures("embedded_stack")
def test_adding_a_check_example_runs_green(tmp_path: Path) -> None:
    setup = ('from workbook import setup, section, check, summary\n'
             'wb = setup("99_readme", env=env, run_id=run_id, ledger_path=ledger_path)\n'
             'auth, backend = wb.auth, wb.backend\n'
             'section("readme_example")')
    write_notebook(tmp_path / "notebooks" / "99_readme.ipynb", setup, example(), "await summary()")
    code = Runner(RunOptions(env="local", notebooks_dir=tmp_path / "notebooks", outputs_dir=tmp_path / "outputs",
                             parallel=1, timeout_s=300)).run()
    results = RunResults.read(tmp_path / "outputs" / "latest" / "results.json")
    assert [(c.check, c.status, c.message) for c in results.checks] == [
        ("renamed_thread_listed_under_new_title", "passed", "")], results.checks
    assert code == 0
