"""Two runs side by side: `run_all.py --compare A B` and the report's environment diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests_support import checks_notebook, git_project, params_text, run, run_all
from workbook.results import CheckResult, Measurement, RunResults
from workbook.runner.compare import compare, format_comparison

ENV_AWARE = (
    'with check("env_specific"):\n    assert wb.env.name == "local", f"not local but {wb.env.name}"',
    'with check("latency") as ck:\n    p95 = 12.0 if wb.env.name == "local" else 31.5\n'
    '    assert ck.measure("p95", p95, budget=40.0) <= 40.0',
    'with check("same_everywhere"):\n    assert True',
)


def result(cid: str, status: str, message: str = "", measurements: list[Measurement] | None = None) -> CheckResult:
    nb, section, name = cid.split(".")
    return CheckResult(id=cid, notebook=nb, section=section, check=name, status=status, duration_s=1.0,
                       message=message, measurements=measurements or [])


def test_compare_lists_status_changes_with_both_messages_and_measurements() -> None:
    a = RunResults(run_id="A", env="local", started_at="t", commit="c" * 40, tree="c" * 40, checks=[
        result("n.s.same", "passed", measurements=[Measurement(name="p95", value=10, budget=20)]),
        result("n.s.broke", "passed"),
        result("n.s.gone", "failed", "boom"),
    ])
    b = RunResults(run_id="B", env="staging", started_at="t", commit="c" * 40, tree="c" * 40, checks=[
        result("n.s.same", "passed", measurements=[Measurement(name="p95", value=25, budget=20),
                                                   Measurement(name="rps", value=80, unit="1/s")]),
        result("n.s.broke", "failed", "AssertionError: 502 from the gateway"),
        result("n.s.new", "skipped", "no tool server"),
    ])
    cmp = compare(a, b)
    assert [(d.id, d.a.status if d.a else None, d.b.status if d.b else None) for d in cmp.status] == [
        ("n.s.broke", "passed", "failed"), ("n.s.gone", "failed", None), ("n.s.new", None, "skipped")]
    assert [(r.id, r.name) for r in cmp.measurements] == [("n.s.same", "p95"), ("n.s.same", "rps")]
    text = format_comparison(cmp)
    assert "n.s.broke: A passed, B failed\n    B: AssertionError: 502 from the gateway" in text
    assert "n.s.gone: A failed, B not run\n    A: boom" in text
    assert "n.s.same p95  10 / 20 ms | 25 / 20 ms OVER" in text
    assert "n.s.same rps  -          | 80 1/s" in text
    assert "different code" not in text


def test_compare_two_envs_on_the_same_commit(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "params" / "staging.yaml").write_text(params_text())
    checks_notebook(project / "notebooks" / "01_a.ipynb", *ENV_AWARE)
    git_project(project)
    assert run() == 0
    assert run(env="staging") == 1
    capsys.readouterr()

    assert run_all("--compare", "local", "staging") == 1
    out = capsys.readouterr().out
    assert "status differs: 1 check(s)\n  01_a.basic.env_specific: A passed, B failed" in out
    assert "B: AssertionError: not local but staging" in out
    assert "01_a.basic.latency p95  12 / 40 ms | 31.5 / 40 ms" in out
    assert "same_everywhere" not in out

    # The staging run's report shows the same view: the history held a local run of this commit.
    page = (project / "outputs" / "latest" / "report.html").read_text()
    section = page[page.index('<h2 id="compare">'):page.index('<h2 id="all-checks">')]
    assert "Compared with local on the same code" in section
    assert "01_a.basic.env_specific" in section and "not local but staging" in section
    assert "31.5 / 40 ms" in section and "12 / 40 ms" in section

    assert run_all("--compare", "latest", "latest") == 0
    assert "status differs: 0 check(s)" in capsys.readouterr().out


def test_compare_refuses_what_is_not_a_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all("--compare", "nowhere", "latest") == 2
    assert "nowhere: not a run directory" in capsys.readouterr().out


def test_no_comparison_in_the_report_without_a_run_of_another_env(project: Path) -> None:
    checks_notebook(project / "notebooks" / "01_a.ipynb", *ENV_AWARE)
    git_project(project)
    assert run() == 0
    assert 'id="compare"' not in (project / "outputs" / "latest" / "report.html").read_text()
