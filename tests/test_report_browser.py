"""report.html in a real browser (headless Chromium through Playwright): failures first, every
chart drawn, no console error, and a run of 1,200 checks that stays usable (filter by status and
notebook, search by id).

Skipped, with the reason, where Chromium or Playwright is missing; `.ci/run` installs both.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbook.results import CheckResult, Measurement, NotebookResult, RunResults
from workbook.runner.report import write_reports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (apt-get install chromium)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Opened:
    def __init__(self, browser: object, path: Path):
        self.errors: list[str] = []
        self.page = browser.new_page()  # type: ignore[attr-defined]
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        t0 = time.monotonic()
        self.page.goto(path.as_uri(), wait_until="load")
        self.page.wait_for_function("""() => Array.from(document.querySelectorAll('.plotly-graph-div'))
                                       .every(d => d.querySelector('svg.main-svg'))""", timeout=60_000)
        self.load_s = time.monotonic() - t0

    def shown(self) -> list[dict[str, str]]:
        return self.page.eval_on_selector_all(
            "#checks tbody tr:not([hidden])", "rows => rows.map(r => ({...r.dataset}))")


def check(nb: str, section: str, name: str, status: str, duration: float, **kw: object) -> CheckResult:
    return CheckResult(id=f"{nb}.{section}.{name}", notebook=nb, section=section, check=name, status=status,
                       duration_s=duration, **kw)


def small_run() -> RunResults:
    return RunResults(
        run_id="20260509T073525-local", env="local", started_at="2026-05-09T07:35:25.000+00:00",
        finished_at="2026-05-09T07:36:25.000+00:00", duration_s=60.0, commit="2fdb3bb" * 5, tree="2fdb3bb" * 5,
        notebooks=[NotebookResult(name="00_preflight", status="passed", duration_s=3.0),
                   NotebookResult(name="02_websocket", status="failed", duration_s=20.0)],
        checks=[
            check("00_preflight", "connectivity", "postgres_answers", "passed", 0.2),
            check("00_preflight", "latency", "redis_latency", "passed", 1.1,
                  measurements=[Measurement(name="p95", value=3.2, budget=20.0)]),
            check("02_websocket", "fanout", "broadcast_p99", "failed", 4.0, message="AssertionError: p99 250 > 200",
                  measurements=[Measurement(name="p99", value=250.0, budget=200.0)]),
            check("02_websocket", "limits", "oversized_frame", "skipped", 0.0, message="server-only"),
        ])


def big_run(notebooks: int = 6, sections: int = 20, per_section: int = 10) -> RunResults:
    checks = []
    for n in range(notebooks):
        for s in range(sections):
            for c in range(per_section):
                i = len(checks)
                status = "failed" if i % 24 == 5 else "skipped" if i % 12 == 7 else "passed"
                checks.append(check(f"{n:02d}_nb", f"sec{s:02d}", f"check{c:02d}", status, (i % 17) / 10,
                                    message=f"AssertionError: case {i}" if status == "failed" else ""))
    return RunResults(run_id="20260509T080000-local", env="local", started_at="2026-05-09T08:00:00.000+00:00",
                      duration_s=600.0, checks=checks,
                      notebooks=[NotebookResult(name=f"{n:02d}_nb", status="failed", duration_s=100.0)
                                 for n in range(notebooks)])


def test_report_failures_first_charts_drawn_no_console_error(browser: object, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    for i in range(3):  # earlier runs: the trend chart and the last outcomes have something to draw
        earlier = small_run()
        earlier.run_id = f"2026050{i}T000000-local"
        write_reports(earlier, outputs / earlier.run_id, outputs)
    page = Opened(browser, write_reports(small_run(), outputs / "run", outputs).report_html)
    assert page.errors == []
    headings = page.page.eval_on_selector_all("h2", "hs => hs.map(h => h.id)")
    assert headings[0] == "failures", headings
    assert page.page.inner_text("#secrets").startswith("0 secrets found")
    assert page.page.inner_text("#failures + table").count("02_websocket.fanout.broadcast_p99") == 1
    rows = page.shown()
    assert [r["status"] for r in rows] == ["failed", "skipped", "passed", "passed"]
    charts = page.page.eval_on_selector_all(".plotly-graph-div", "ds => ds.map(d => d.querySelectorAll('svg.main-svg').length)")
    assert len(charts) == 6 and all(charts), charts  # the budgets chart too: this run measured something
    assert page.page.locator("#checks tbody tr").first.locator(".o").count() == 4  # 3 earlier runs + this one


def test_a_thousand_checks_stay_usable(browser: object, tmp_path: Path) -> None:
    results = big_run()
    assert len(results.checks) == 1200
    failed = [c for c in results.checks if c.status == "failed"]
    page = Opened(browser, write_reports(results, tmp_path / "run", tmp_path).report_html)
    assert page.errors == []
    assert page.load_s < 30, f"the page took {page.load_s:.1f}s to load and draw"
    assert page.page.inner_text("#filter-shown") == "1200 of 1200 checks"
    assert [r["status"] for r in page.shown()[: len(failed)]] == ["failed"] * len(failed)

    t0 = time.monotonic()
    page.page.select_option("#filter-status", "failed")
    rows = page.shown()
    assert time.monotonic() - t0 < 5
    assert len(rows) == len(failed) and {r["status"] for r in rows} == {"failed"}
    assert page.page.inner_text("#filter-shown") == f"{len(failed)} of 1200 checks"

    page.page.select_option("#filter-notebook", "03_nb")
    rows = page.shown()
    assert rows and {(r["status"], r["notebook"]) for r in rows} == {("failed", "03_nb")}

    page.page.select_option("#filter-status", "")
    page.page.fill("#filter-search", "03_nb.sec07.")
    rows = page.shown()
    assert sorted(r["id"] for r in rows) == [f"03_nb.sec07.check{c:02d}" for c in range(10)]

    page.page.select_option("#filter-notebook", "")
    page.page.fill("#filter-search", "SEC19.CHECK09")  # ids are matched without regard to case
    assert len(page.shown()) == 6
    assert page.errors == []
