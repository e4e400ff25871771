"""History across runs: every check's outcome and the code it ran, flaky and slowing checks,
`run_all.py --history` and the report's marks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests_support import checks_notebook, git_project, run, run_all
from workbook.results import NotebookResult, RunResults
from workbook.runner.console import parallel_line
from workbook.runner.history import (HistoryEntry, alone_times, append_history, format_history, read_history,
                                     trends)


def entry(run_id: str, checks: dict[str, tuple[str, float]], tree: str = "c1", env: str = "local",
          **kw: object) -> HistoryEntry:
    return HistoryEntry(run_id=run_id, env=env, started_at=f"2026-05-09T07:{len(run_id):02d}:{run_id[-2:]}",
                        duration_s=1.0, passed=0, failed=0, skipped=0, notebooks_failed=0, run_dir=run_id,
                        commit=tree.split("+")[0], dirty="+" in tree, tree=tree, checks=checks, **kw)


def test_flips_count_only_between_runs_of_the_same_code() -> None:
    history = [
        entry("r01", {"a": ("passed", 1), "b": ("passed", 1)}, tree="c1"),
        entry("r02", {"a": ("failed", 1), "b": ("passed", 1)}, tree="c1"),
        entry("r03", {"a": ("passed", 1), "b": ("failed", 1)}, tree="c2"),  # b changed with the code: not flaky
        entry("r04", {"a": ("failed", 1), "b": ("failed", 1)}, tree="c2"),
        entry("r05", {"a": ("skipped", 0), "b": ("failed", 1)}, tree="c2"),  # a skip is no verdict
        entry("r06", {"a": ("passed", 1)}, tree="c2"),
    ]
    found = trends(history, "local")
    assert (found["a"].flips, found["a"].flip_runs) == (3, 5)
    assert found["a"].flaky and not found["b"].flaky
    assert found["a"].marks() == "✓✗✓✗-✓"


def test_unknown_code_and_other_envs_never_make_a_check_flaky() -> None:
    history = [entry("r01", {"a": ("passed", 1)}, tree=""), entry("r02", {"a": ("failed", 1)}, tree=""),
               entry("r03", {"a": ("passed", 1)}, env="staging"), entry("r04", {"a": ("failed", 1)})]
    assert not trends(history, "local")["a"].flaky


def test_slower_past_factor_of_median_and_by_a_real_margin() -> None:
    durations = [1.0, 1.2, 0.9, 1.1, 3.0]
    history = [entry(f"r{i:02d}", {"slow": ("passed", d), "tiny": ("passed", d / 100), "steady": ("passed", 1.0)})
               for i, d in enumerate(durations)]
    found = trends(history, "local")
    assert found["slow"].slower and found["slow"].median_s == pytest.approx(1.05)
    assert found["slow"].factor == pytest.approx(3.0 / 1.05)
    assert not found["tiny"].slower  # 30 ms after 10 ms: past the factor, not past the margin
    assert not found["steady"].slower
    assert not trends(history[-3:], "local")["slow"].slower  # too few earlier runs for a median


def test_a_merged_run_stands_for_its_shards(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    for e in (entry("s1", {"a": ("passed", 1)}, shard="1/2"), entry("s2", {"b": ("failed", 1)}, shard="2/2"),
              entry("m1", {"a": ("passed", 1), "b": ("failed", 1)}, merged_from=["s1", "s2"])):
        append_history(path, e)
    assert [e.run_id for e in read_history(path)] == ["m1"]


def test_history_command_prints_flaky_and_slower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORKBOOK_ROOT", str(tmp_path))
    (tmp_path / "outputs").mkdir()
    statuses = ["passed", "failed", "passed", "passed", "failed"]
    for i, status in enumerate(statuses):
        append_history(tmp_path / "outputs" / "history.jsonl",
                       entry(f"r{i:02d}", {"01_auth.lockout.locked": (status, 0.4),
                                           "02_ws.fanout.broadcast": ("passed", 4.8 if i == 4 else 1.2)},
                             tree="2fdb3bb1c0ffee"))
    assert run_all("--history") == 0
    out = capsys.readouterr().out
    assert "local: 5 runs" in out
    assert "01_auth.lockout.locked  3 flips in 5 runs of 2fdb3bb1c0   last 10: ✓✗✓✓✗" in out
    assert "02_ws.fanout.broadcast  4.80s vs median 1.20s (4.0x)" in out


def test_runs_record_commit_statuses_and_mark_a_flaky_check(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counter = project / "state" / "count"
    counter.parent.mkdir()
    counter.write_text("0")
    checks_notebook(project / "notebooks" / "01_a.ipynb",
                    'with check("steady"):\n    assert True',
                    "with check(\"flaky\"):\n    from pathlib import Path\n"
                    f"    p = Path({str(counter)!r})\n    n = int(p.read_text()) + 1\n    p.write_text(str(n))\n"
                    "    assert n % 2, f'even run {n}'")
    commit = git_project(project)
    assert [run() for _ in range(3)] == [0, 1, 0]

    lines = [json.loads(line) for line in (project / "outputs" / "history.jsonl").read_text().splitlines()]
    assert [(e["commit"], e["dirty"], e["tree"]) for e in lines] == [(commit, False, commit)] * 3
    assert [e["checks"]["01_a.basic.flaky"][0] for e in lines] == ["passed", "failed", "passed"]
    assert all(e["checks"]["01_a.basic.steady"][0] == "passed" for e in lines)

    page = (project / "outputs" / "latest" / "report.html").read_text()
    row = page[page.index('<tr data-status="passed" data-notebook="01_a" data-id="01_a.basic.flaky">'):]
    row = row[:row.index("</tr>")]
    assert "flaky: 2 flips" in row
    assert re.findall(r'class="o (\w+)"', row) == ["passed", "failed", "passed"]
    capsys.readouterr()
    assert run_all("--history") == 0
    out = capsys.readouterr().out
    assert "flaky: 1 " in out and "01_a.basic.flaky  2 flips in 3 runs" in out and "steady" not in out

    (project / "notes.txt").write_text("an uncommitted edit")
    assert run() == 1  # the counter is even again
    last = json.loads((project / "outputs" / "history.jsonl").read_text().splitlines()[-1])
    assert last["dirty"] is True and last["tree"].startswith(commit + "+")


def test_history_command_without_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORKBOOK_ROOT", str(tmp_path))
    assert run_all("--history") == 0
    assert "no runs in" in capsys.readouterr().out
    assert format_history([], ["local"], "h") == "no runs in h yet"


def test_alone_times_come_from_whole_notebooks_run_by_themselves() -> None:
    history = [
        entry("r01", {}, notebooks={"01": 50.0, "02": 100.0}, parallel=1),  # one at a time: both alone
        entry("r02", {}, notebooks={"01": 80.0, "02": 150.0}, parallel=2),  # side by side: neither
        entry("r03", {}, notebooks={"02": 120.0}, parallel=2),  # the only notebook: alone whatever --parallel said
        entry("r04", {}, notebooks={"01": 5.0}, only=["01.some_section"]),  # part of a notebook
        entry("r05", {}, notebooks={"01": 7.0}, shard="1/2"),
        entry("r06", {}, notebooks={"01": 0.0}),  # never ran (interrupted)
        entry("r07", {}, notebooks={"01": 9.0}, env="staging"),
    ]
    assert alone_times(history, "local") == {"01": 50.0, "02": 120.0}


def test_run_end_compares_with_the_notebooks_run_alone() -> None:
    results = RunResults(run_id="r", env="local", started_at="", duration_s=90.0, stack_start_s=10.0, parallel=2,
                         notebooks=[NotebookResult(name=n, status="passed", duration_s=d)
                                    for n, d in (("01", 70.0), ("02", 80.0))])
    line = parallel_line(results, 2, {"01": 50.0, "02": 150.0})
    assert "these 2 notebooks take 200.0s" in line and "this run took 100.0s" in line and "0.50 of that" in line
    line = parallel_line(results, 2, {"01": 50.0})
    assert "add up to 150.0s: 1.7x" in line and "no alone time on record for 02:" in line
    assert "no alone time on record for any of them" in parallel_line(results, 2, {})
    results.only = ["01.some_section", "02"]
    assert "parts of notebooks ran" in parallel_line(results, 2, {"01": 50.0, "02": 150.0})
