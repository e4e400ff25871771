"""`--repeat K`: the selection K times on one stack, and every check whose verdict changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests_support import checks_notebook, run, run_all
from workbook.results import CheckResult, RunResults
from workbook.runner import run as run_module
from workbook.runner.repeat import format_unstable, unstable


def flipping_notebook(project: Path) -> None:
    counter = project / "state" / "count"
    counter.parent.mkdir(exist_ok=True)
    counter.write_text("0")
    checks_notebook(project / "notebooks" / "01_a.ipynb",
                    'with check("steady"):\n    assert True',
                    "with check(\"flaky\"):\n    from pathlib import Path\n"
                    f"    p = Path({str(counter)!r})\n    n = int(p.read_text()) + 1\n    p.write_text(str(n))\n"
                    "    assert n != 2, f'second run {n}'")
    checks_notebook(project / "notebooks" / "02_b.ipynb", 'with check("fine"):\n    assert True')


def test_unstable_lists_checks_whose_verdict_changed() -> None:
    def r(run_id: str, *checks: tuple[str, str]) -> RunResults:
        return RunResults(run_id=run_id, env="local", started_at="t", checks=[
            CheckResult(id=i, notebook="n", section="s", check=i, status=s, duration_s=0.5,
                        message="boom" if s == "failed" else "") for i, s in checks])

    runs = [r("r1", ("a", "passed"), ("b", "passed")), r("r2", ("a", "failed"), ("b", "passed")), r("r3", ("b", "passed"))]
    found = unstable(runs)
    assert [u.id for u in found] == ["a"]
    text = format_unstable(found, 3)
    assert "a (1 passed, 1 failed, 1 not recorded)" in text
    assert "r2: failed     0.50s  boom" in text and "r3: not recorded" in text


def test_repeat_reports_the_flaky_check_and_exits_1(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ups = []

    class CountingLease(run_module.StackLease):
        def up(self) -> None:
            ups.append(1)
            super().up()

    monkeypatch.setattr(run_module, "StackLease", CountingLease)
    flipping_notebook(project)
    assert run(repeat=3) == 1
    out = capsys.readouterr().out
    assert ups == [1], "the stack is brought up once for all runs"
    assert "1 check(s) whose verdict differed across 3 runs:\n  01_a.basic.flaky (2 passed, 1 failed)" in out
    assert "failed" in out and "AssertionError: second run 2" in out
    assert "steady" not in out.split("whose verdict differed")[1] and "fine" not in out.split("whose verdict differed")[1]
    assert len((project / "outputs" / "history.jsonl").read_text().splitlines()) == 3


def test_repeat_of_a_stable_selection_exits_0(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flipping_notebook(project)
    assert run_all("--repeat", "2", "--only", "02_b") == 0
    out = capsys.readouterr().out
    assert "every check had the same verdict in all 2 runs" in out
    assert "run 2 of 2" in out


def test_repeat_must_be_positive(project: Path) -> None:
    flipping_notebook(project)
    assert run(repeat=0) == 2
