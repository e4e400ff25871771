"""run_all gives each parallel slot an embedded stack of its own: a fault one notebook makes
breaks nothing another runs on. The stack directory comes from WORKBOOK_STACK_DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests_support import checks_notebook

from workbook.results import NotebookResult, RunResults
from workbook.runner.console import parallel_line
from workbook.runner.run import RunOptions, Runner
from workbook.stack.manager import Stack, free_port
from workbook.stack.state import STACK_DIR_VAR, Paths, slot_stack_dir


def test_the_stack_dir_is_the_variables_else_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STACK_DIR_VAR, raising=False)
    assert Paths(tmp_path).base == tmp_path / "outputs" / ".stack" == slot_stack_dir(tmp_path, 1)
    monkeypatch.setenv(STACK_DIR_VAR, str(tmp_path / "other"))
    assert Paths(tmp_path).state == tmp_path / "other" / "state.json"
    assert Paths(tmp_path, slot_stack_dir(tmp_path, 2)).base == tmp_path / "outputs" / ".stack-2"
    monkeypatch.setenv(STACK_DIR_VAR, "outputs/.stack-2")  # as the README's `down` of a kept second stack
    assert Paths(tmp_path).base == slot_stack_dir(tmp_path, 2)


def test_a_port_is_handed_out_once_per_process() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_the_run_end_says_how_many_stacks() -> None:
    results = RunResults(run_id="r", env="local", started_at="", duration_s=90.0, stack_start_s=10.0, parallel=2,
                         stacks=2, notebooks=[NotebookResult(name=n, status="passed", duration_s=80.0)
                                              for n in ("01", "02")])
    assert parallel_line(results, 2, {"01": 100.0, "02": 100.0}).endswith("0.50 of that, running 2 at a time on 2 stacks")


# Where this notebook's kernel finds its stack, and that stack's Redis as the env resolves it.
WHERE = '''with check("where") as ck:
    import json, os
    from pathlib import Path
    from workbook.stack.state import STACK_DIR_VAR
    Path(os.environ["WB_WHERE"], wb.notebook + ".json").write_text(json.dumps(
        {"dir": os.environ.get(STACK_DIR_VAR), "redis": wb.env.services["redis"].url}))'''


@pytest.mark.usefixtures("embedded_stack")
def test_two_slots_run_on_two_stacks_and_the_second_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WB_WHERE", str(tmp_path))
    for name in ("01_a", "02_b"):
        checks_notebook(tmp_path / "notebooks" / f"{name}.ipynb", WHERE)
    runner = Runner(RunOptions(env="local", notebooks_dir=tmp_path / "notebooks", outputs_dir=tmp_path / "outputs",
                               parallel=2, timeout_s=300))
    assert runner.run() == 0
    first, second = Stack(), Stack(base=slot_stack_dir(runner.root, 2))
    seen = [json.loads((tmp_path / f"{n}.json").read_text()) for n in ("01_a", "02_b")]
    results = RunResults.read(tmp_path / "outputs" / "latest" / "results.json")
    assert results.stacks == 2 and results.parallel == 2
    # Which notebook got which slot is the scheduler's; that they differ is the point.
    assert {s["dir"] for s in seen} == {str(first.paths.base), str(second.paths.base)}, seen
    assert len({s["redis"] for s in seen}) == 2, seen
    assert not second.any_running(), "the run started the second stack: it must stop it"
    assert first.is_up(), "the first stack was up before the run: it stays"
