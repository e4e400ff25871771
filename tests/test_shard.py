"""`--shard K/N` splits the notebooks by earlier durations; `--merge` joins the shards into one run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests_support import checks_notebook, git_project, run, run_all
from workbook.runner.history import HistoryEntry, read_history
from workbook.runner.shard import Shard, ShardError, assign, parse_shard, share, weights
from workbook.results import RunResults


def past(notebooks: dict[str, float], env: str = "local", **kw: object) -> HistoryEntry:
    return HistoryEntry(run_id="r", env=env, started_at="t", duration_s=1, passed=0, failed=0, skipped=0,
                        notebooks_failed=0, run_dir="r", notebooks=notebooks, **kw)


def test_parse_shard() -> None:
    assert parse_shard("2/3") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(ShardError):
            parse_shard(bad)


def test_heaviest_first_to_the_lightest_shard() -> None:
    assert assign({"a": 10, "b": 6, "c": 5, "d": 1}, 2) == [["a", "d"], ["b", "c"]]
    assert assign({"a": 1, "b": 1, "c": 1}, 2) == [["a", "c"], ["b"]]  # ties: by name, lower shard first
    assert assign({"a": 1}, 3) == [["a"], [], []]


def test_weights_come_from_full_runs_and_unknown_notebooks_are_estimated() -> None:
    history = [past({"01_a": 40.0, "02_b": 4.0}), past({"01_a": 60.0, "02_b": 6.0}),
               past({"01_a": 999.0}, shard="1/2"), past({"02_b": 999.0}, only=["02_b"]),
               past({"01_a": 1.0}, env="staging")]
    w = weights({"01_a": 10, "02_b": 2, "03_new": 4}, history, "local")
    assert w["01_a"] == 50.0 and w["02_b"] == 5.0
    assert w["03_new"] == 4 * 4.5  # 4 checks x the median seconds per check of the newest runs (60/10, 6/2)
    assert share(Shard(1, 2), {"01_a": 10, "02_b": 2, "03_new": 4}, history, "local") == ["01_a"]


# Far enough apart that a loaded machine's noise in kernel start-up cannot reorder them.
SLEEPS = {"01_slow": 4.0, "02_mid": 2.0, "03_quick": 0.0, "04_quick": 0.0}


def test_two_shards_merged_equal_one_full_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, seconds in SLEEPS.items():
        checks_notebook(project / "notebooks" / f"{name}.ipynb",
                        f'with check("sleeps"):\n    import time\n    time.sleep({seconds})',
                        'with check("second"):\n    assert True')
    git_project(project)
    assert run(parallel=2) == 0
    full = RunResults.read(project / "outputs" / "latest" / "results.json")

    shard_dirs, shard_notebooks = [], []
    for k in (1, 2):
        assert run(shard=f"{k}/2") == 0
        res = RunResults.read(project / "outputs" / "latest" / "results.json")
        assert res.shard == f"{k}/2"
        shard_dirs.append(str((project / "outputs" / "latest").resolve()))
        shard_notebooks.append([n.name for n in res.notebooks])
    # Balanced on the full run's durations: the two slow ones apart, every notebook in one shard.
    assert sorted(shard_notebooks[0] + shard_notebooks[1]) == sorted(SLEEPS)
    assert "01_slow" in shard_notebooks[0] and "02_mid" in shard_notebooks[1]

    capsys.readouterr()
    assert run_all("--merge", *shard_dirs) == 0
    assert "merged 2 runs" in capsys.readouterr().out
    merged_dir = (project / "outputs" / "latest").resolve()
    merged = RunResults.read(merged_dir / "results.json")
    assert sorted(c.id for c in merged.checks) == sorted(c.id for c in full.checks)
    assert [c.id for c in merged.checks] == [c.id for c in full.checks]  # notebook order, as one run writes it
    assert merged.merged_from == [Path(d).name for d in shard_dirs]
    assert merged.tree == full.tree and merged.totals.passed == 8
    for name in SLEEPS:
        assert (merged_dir / f"{name}.ipynb").is_file()
    cases = {(c.get("classname"), c.get("name")) for c in ET.parse(merged_dir / "junit.xml").iter("testcase")}
    assert ("01_slow.basic", "sleeps") in cases and len(cases) == 8
    assert "merged from" in (merged_dir / "report.html").read_text()
    assert [e.run_id for e in read_history(project / "outputs" / "history.jsonl")] == [full.run_id, merged.run_id]

    assert run_all("--merge", shard_dirs[0], shard_dirs[0]) == 2  # one notebook twice
    assert "is in both" in capsys.readouterr().out


def test_a_shard_with_nothing_to_do_runs_nothing(project: Path) -> None:
    checks_notebook(project / "notebooks" / "01_a.ipynb", 'with check("one"):\n    assert True')
    assert run(shard="2/2") == 0
    assert not (project / "outputs" / "latest").exists()
    assert run(shard="3/2") == 2


def test_shard_history_lines_say_which_shard(project: Path) -> None:
    checks_notebook(project / "notebooks" / "01_a.ipynb", 'with check("one"):\n    assert True')
    assert run(shard="1/1") == 0
    line = json.loads((project / "outputs" / "history.jsonl").read_text())
    assert line["shard"] == "1/1" and line["checks"] == {"01_a.basic.one": ["passed", pytest.approx(0, abs=1)]}
