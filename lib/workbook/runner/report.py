"""Turn one run's `RunResults` into what people and CI read, and prove it leaks no secret.

Writes results.json, junit.xml and report.html into the run directory, scans every file of
the run for the env's secrets, then appends the run to outputs/history.jsonl and points
outputs/latest at it. History and `latest` are touched last so they never name a run
directory whose reports are incomplete.

The scan goes in two passes: the files the notebooks produced (and anything copied in) first,
so the reports can say what it found; then the reports themselves, which are rewritten with
the total if they hold a secret too (a check message the scrub missed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from workbook.results import RunResults
from workbook.runner import html_report, secrets_scan
from workbook.runner.compare import Comparison, compare
from workbook.runner.history import HistoryEntry, append_history, entry_for, read_history, trends
from workbook.runner.junit import write_junit

__all__ = ["ReportPaths", "read_history", "write_reports"]


@dataclass(frozen=True)
class ReportPaths:
    results_json: Path
    junit_xml: Path
    report_html: Path
    history: Path
    latest: Path


def write_reports(results: RunResults, run_dir: Path, outputs_dir: Path,
                  secrets: dict[str, str] | None = None) -> ReportPaths:
    """`secrets`: name -> value of every secret the env resolved, to scan the run's files for."""
    run_dir.mkdir(parents=True, exist_ok=True)
    outputs_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        results_json=run_dir / "results.json",
        junit_xml=run_dir / "junit.xml",
        report_html=run_dir / "report.html",
        history=outputs_dir / "history.jsonl",
        latest=outputs_dir / "latest",
    )
    reports = (paths.results_json, paths.junit_xml, paths.report_html)
    secrets = secrets or {}
    produced = sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink() and p not in reports)
    results.secrets_checked = len(secrets)
    results.files_scanned, results.secret_hits = secrets_scan.scan(run_dir, produced, secrets)
    results.files_scanned += len(reports)

    history = [e for e in read_history(paths.history) if e.run_id != results.run_id]
    _write(results, paths, history, outputs_dir)
    _, late = secrets_scan.scan(run_dir, list(reports), secrets)
    if late:
        results.secret_hits += late
        _write(results, paths, history, outputs_dir)
    append_history(paths.history, entry_for(results, run_dir, outputs_dir))
    _point_latest(paths.latest, run_dir)
    return paths


def _write(results: RunResults, paths: ReportPaths, earlier: list[HistoryEntry], outputs_dir: Path) -> None:
    results.write(paths.results_json)
    write_junit(results, paths.junit_xml)
    history = earlier + [entry_for(results, paths.results_json.parent, outputs_dir)]
    page = html_report.render(results, history, trends(history, results.env), _same_code_elsewhere(results, earlier,
                                                                                                     outputs_dir))
    paths.report_html.write_text(page, encoding="utf-8")


def _same_code_elsewhere(results: RunResults, history: list[HistoryEntry], outputs_dir: Path) -> Comparison | None:
    """This run against the newest run of another env made from the same code, if the history has one."""
    if not results.tree:
        return None
    others = [e for e in history if e.tree == results.tree and e.env != results.env]
    for other in sorted(others, key=lambda e: e.started_at, reverse=True):
        path = outputs_dir / other.run_dir / "results.json"
        if path.is_file():
            return compare(results, RunResults.read(path))
    return None


def _point_latest(link: Path, run_dir: Path) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(run_dir, link.parent), tmp)
    os.replace(tmp, link)
