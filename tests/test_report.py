from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from plotly.offline import get_plotlyjs

from workbook.runner.report import read_history, write_reports
from workbook.results import CheckResult, NotebookResult, RunResults

NASTY = "expected <a href=\"x\"> & 'ünïcødé' 🚀 got\x07 bell"
NASTY_TB = 'Traceback (most recent call last):\n  assert x < 3 and y == "&"\x07\nAssertionError: ü'
SCRIPT = "<script>alert(1)</script>"


def check(nb: str, section: str, name: str, status: str, duration: float = 0.5, **kw: str) -> CheckResult:
    return CheckResult(
        id=f"{nb}.{section}.{name}", notebook=nb, section=section, check=name, status=status, duration_s=duration, **kw
    )


def make_results(run_id: str = "20260509T073525-local", env: str = "local") -> RunResults:
    return RunResults(
        run_id=run_id,
        env=env,
        started_at="2026-05-09T07:35:25.000+00:00",
        finished_at="2026-05-09T07:52:00.000+00:00",
        duration_s=995.0,
        notebooks=[
            NotebookResult(name="00_preflight", status="passed", duration_s=3.0),
            NotebookResult(name="10_api", status="failed", duration_s=20.0),
            NotebookResult(name="20_ws", status="timeout", duration_s=900.0, error="Timed out after 900s in cell 7"),
            NotebookResult(name="30_db", status="error", duration_s=1.0, error="Kernel died <&> unexpectedly"),
        ],
        checks=[
            check("00_preflight", "services", "postgres_up", "passed", 0.2),
            check("00_preflight", "services", "redis_up", "passed", 0.1),
            check("10_api", "auth", "login", "passed", 1.5),
            check("10_api", "auth", "bad_token", "failed", 2.5, message=NASTY, traceback=NASTY_TB),
            check("10_api", "chat", "stream", "failed", 4.0, message=SCRIPT),
            check("10_api", "chat", "tools", "skipped", 0.0, message="no tool server"),
            check("20_ws", "connect", "handshake", "passed", 12.0),
        ],
    )


def junit(tmp_path: Path, results: RunResults | None = None) -> ET.Element:
    paths = write_reports(results or make_results(), tmp_path / "outputs" / "run", tmp_path / "outputs")
    return ET.parse(paths.junit_xml).getroot()


def counts(el: ET.Element) -> tuple[int, int, int, int]:
    return tuple(int(el.get(k, "-1")) for k in ("tests", "failures", "errors", "skipped"))  # type: ignore[return-value]


def test_junit_counts_on_root_and_suites(tmp_path: Path) -> None:
    root = junit(tmp_path)
    assert root.tag == "testsuites"
    assert counts(root) == (9, 2, 2, 1)
    assert float(root.get("time", "")) == 995.0
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["00_preflight", "10_api", "20_ws", "30_db"]
    assert counts(suites["00_preflight"]) == (2, 0, 0, 0)
    assert counts(suites["10_api"]) == (4, 2, 0, 1)
    assert counts(suites["20_ws"]) == (2, 0, 1, 0)
    assert counts(suites["30_db"]) == (1, 0, 1, 0)
    assert float(suites["20_ws"].get("time", "")) == 900.0
    for suite in suites.values():
        assert int(suite.get("tests", "")) == len(suite.findall("testcase"))


def test_junit_testcases_classnames_and_failure_text(tmp_path: Path) -> None:
    cases = {(c.get("classname"), c.get("name")): c for c in junit(tmp_path).iter("testcase")}
    assert ("00_preflight.services", "postgres_up") in cases
    assert cases["10_api.auth", "login"].get("time") == "1.500"
    assert list(cases["10_api.auth", "login"]) == []

    failure = cases["10_api.auth", "bad_token"].find("failure")
    assert failure is not None
    # \x07 is illegal in XML 1.0: it must be gone, everything else must survive intact.
    assert failure.get("message") == NASTY.replace("\x07", "\ufffd")
    assert failure.text == NASTY_TB.replace("\x07", "\ufffd")

    skipped = cases["10_api.chat", "tools"].find("skipped")
    assert skipped is not None and skipped.get("message") == "no tool server"


def test_junit_bytes_are_valid_utf8_xml_without_control_chars(tmp_path: Path) -> None:
    paths = write_reports(make_results(), tmp_path / "run", tmp_path)
    raw = paths.junit_xml.read_bytes()
    assert raw.startswith(b"<?xml")
    assert b"\x07" not in raw
    assert "🚀".encode() in raw


def test_junit_notebook_failing_outside_checks_gets_an_error_testcase(tmp_path: Path) -> None:
    results = make_results()
    results.notebooks[1] = NotebookResult(name="10_api", status="failed", duration_s=20.0, error="setup cell raised")
    root = junit(tmp_path, results)
    notebook_cases = {c.get("classname"): c for c in root.iter("testcase") if c.get("name") == "notebook"}
    assert set(notebook_cases) == {"10_api", "20_ws", "30_db"}  # passed notebook: none

    error = notebook_cases["20_ws"].find("error")
    assert error is not None
    assert error.text == "Timed out after 900s in cell 7"
    assert error.get("type") == "timeout"
    assert notebook_cases["30_db"].find("error").text == "Kernel died <&> unexpectedly"  # type: ignore[union-attr]
    assert counts(root)[2] == 3


def test_junit_failed_notebook_without_error_text_adds_no_testcase(tmp_path: Path) -> None:
    root = junit(tmp_path)
    api = next(s for s in root.findall("testsuite") if s.get("name") == "10_api")
    assert [c.get("name") for c in api.findall("testcase")] == ["login", "bad_token", "stream", "tools"]


def test_html_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    paths = write_reports(make_results(), tmp_path / "run", tmp_path)
    page = paths.report_html.read_text(encoding="utf-8")
    assert "20260509T073525-local" in page
    assert page.count(get_plotlyjs()) == 1
    ours = page.replace(get_plotlyjs(), "")  # the bundle itself mentions URLs it never fetches here
    assert "<script src" not in ours and "http" not in ours
    assert page.count("Plotly.newPlot(") == 5
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Timed out after 900s in cell 7" in page
    assert "FAILED" in page


def test_html_failures_table_lists_notebook_and_check_failures(tmp_path: Path) -> None:
    page = write_reports(make_results(), tmp_path / "run", tmp_path).report_html.read_text(encoding="utf-8")
    start = page.index('<h2 id="failures">')
    table = page[start : page.index("<h2", start + 1)]
    for what in ("20_ws", "30_db", "10_api.auth.bad_token", "10_api.chat.stream"):
        assert f">{what}<" in table
    assert "postgres_up" not in table
    assert "Kernel died &lt;&amp;&gt; unexpectedly" in table


def test_html_verdict_passed_when_all_green(tmp_path: Path) -> None:
    results = make_results()
    results.notebooks = results.notebooks[:1]
    results.checks = results.checks[:2]
    page = write_reports(results, tmp_path / "run", tmp_path).report_html.read_text(encoding="utf-8")
    assert "PASSED" in page and "FAILED" not in page
    assert "<p>None.</p>" in page


def test_history_one_line_per_call(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    for run_id in ("r1", "r2"):
        write_reports(make_results(run_id), outputs / run_id, outputs)
    lines = (outputs / "history.jsonl").read_text().splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[1])
    assert entry == {
        "run_id": "r2",
        "env": "local",
        "started_at": "2026-05-09T07:35:25.000+00:00",
        "duration_s": 995.0,
        "passed": 4,
        "failed": 2,
        "skipped": 1,
        "notebooks_failed": 3,
        "run_dir": "r2",
        "commit": "",
        "dirty": False,
        "tree": "",
        "shard": "",
        "only": [],
        "merged_from": [],
        "secrets_found": 0,
        "checks": {
            "00_preflight.services.postgres_up": ["passed", 0.2],
            "00_preflight.services.redis_up": ["passed", 0.1],
            "10_api.auth.login": ["passed", 1.5],
            "10_api.auth.bad_token": ["failed", 2.5],
            "10_api.chat.stream": ["failed", 4.0],
            "10_api.chat.tools": ["skipped", 0.0],
            "20_ws.connect.handshake": ["passed", 12.0],
        },
        "notebooks": {"00_preflight": 3.0, "10_api": 20.0, "20_ws": 900.0, "30_db": 1.0},
        "parallel": 0,
    }


def test_history_survives_corrupt_and_partial_lines(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    write_reports(make_results("old-run"), outputs / "old-run", outputs)
    history = outputs / "history.jsonl"
    with history.open("ab") as f:
        f.write(b"this is not json\n\xff\xfe\n{\"run_id\": \"x\"}\n[1, 2]\n{\"run_id\": \"cut-sho")

    paths = write_reports(make_results("new-run"), outputs / "new-run", outputs)

    assert [e.run_id for e in read_history(history)] == ["old-run", "new-run"]
    assert json.loads(history.read_bytes().splitlines()[-1])["run_id"] == "new-run"
    page = paths.report_html.read_text(encoding="utf-8")
    assert '"old-run"' in page  # the earlier run made it into the trend chart


def test_trend_only_shows_runs_of_the_same_env(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    write_reports(make_results("staging-run", env="staging"), outputs / "a", outputs)
    page = write_reports(make_results("local-run"), outputs / "b", outputs).report_html.read_text(encoding="utf-8")
    assert '"local-run"' in page
    assert "staging-run" not in page


def test_latest_points_at_newest_run_dir(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    first, second = outputs / "20260509T070000-local", outputs / "20260509T080000-local"
    write_reports(make_results("one"), first, outputs)
    assert (outputs / "latest").resolve() == first.resolve()
    write_reports(make_results("two"), second, outputs)

    latest = outputs / "latest"
    assert latest.is_symlink()
    assert os.readlink(latest) == second.name  # relative: the outputs tree can be moved
    assert latest.resolve() == second.resolve()
    assert (latest / "results.json").exists()
    assert sorted(p.name for p in outputs.iterdir()) == sorted([first.name, second.name, "history.jsonl", "latest"])


def test_run_that_produced_nothing_still_gets_reports(tmp_path: Path) -> None:
    results = RunResults(run_id="empty", env="local", started_at="2026-05-09T07:35:25.000+00:00")
    paths = write_reports(results, tmp_path / "empty", tmp_path)
    root = ET.parse(paths.junit_xml).getroot()
    assert counts(root) == (0, 0, 0, 0) and root.findall("testsuite") == []
    page = paths.report_html.read_text(encoding="utf-8")
    assert page.count(get_plotlyjs()) == 1 and "PASSED" in page
