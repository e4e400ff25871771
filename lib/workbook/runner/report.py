"""Turn one run's `RunResults` into what people and CI read.

Writes results.json, junit.xml and report.html into the run directory, then appends the
run to outputs/history.jsonl and points outputs/latest at it. History and `latest` are
touched last so they never name a run directory whose reports are incomplete.
"""

from __future__ import annotations

import html
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots
from pydantic import BaseModel, ValidationError

from workbook.results import CheckResult, NotebookResult, RunResults

COLORS = {"passed": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e"}
SLOWEST = 15
TREND_RUNS = 50  # enough to see a drift; more turns the x axis into noise

# Everything XML 1.0 forbids, lone surrogates included: ElementTree would write them
# and every JUnit reader would then reject the whole file.
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class ReportPaths:
    results_json: Path
    junit_xml: Path
    report_html: Path
    history: Path
    latest: Path


class HistoryEntry(BaseModel):
    run_id: str
    env: str
    started_at: str
    duration_s: float
    passed: int
    failed: int
    skipped: int
    notebooks_failed: int
    run_dir: str  # relative to the outputs directory, so the tree can be moved


def write_reports(results: RunResults, run_dir: Path, outputs_dir: Path) -> ReportPaths:
    run_dir.mkdir(parents=True, exist_ok=True)
    outputs_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        results_json=run_dir / "results.json",
        junit_xml=run_dir / "junit.xml",
        report_html=run_dir / "report.html",
        history=outputs_dir / "history.jsonl",
        latest=outputs_dir / "latest",
    )
    entry = HistoryEntry(
        run_id=results.run_id,
        env=results.env,
        started_at=results.started_at,
        duration_s=results.duration_s,
        run_dir=os.path.relpath(run_dir, outputs_dir),
        **results.totals.model_dump(),
    )
    results.write(paths.results_json)
    _write_junit(results, paths.junit_xml)
    history = [e for e in read_history(paths.history) if e.run_id != entry.run_id]
    paths.report_html.write_text(_html_report(results, history + [entry]), encoding="utf-8")
    _append_history(paths.history, entry)
    _point_latest(paths.latest, run_dir)
    return paths


# --- JUnit -------------------------------------------------------------------------------


def _x(text: str) -> str:
    return _XML_FORBIDDEN.sub("\ufffd", text)


def _failed_outside_checks(nb: NotebookResult) -> bool:
    return nb.status in ("timeout", "error") or (nb.status == "failed" and bool(nb.error))


def _write_junit(results: RunResults, path: Path) -> None:
    root = ET.Element("testsuites", name=_x(f"workbook {results.run_id} ({results.env})"))
    by_name = {nb.name: nb for nb in results.notebooks}
    # A check whose notebook is missing from `notebooks` must still be reported, not dropped.
    names = dict.fromkeys([nb.name for nb in results.notebooks] + [c.notebook for c in results.checks])
    totals: Counter[str] = Counter()
    for name in names:
        nb = by_name.get(name)
        checks = [c for c in results.checks if c.notebook == name]
        suite = ET.SubElement(root, "testsuite", name=_x(name))
        counts: Counter[str] = Counter(tests=len(checks))
        for c in checks:
            classname = _x(f"{c.notebook}.{c.section}")
            case = ET.SubElement(suite, "testcase", classname=classname, name=_x(c.check), time=f"{c.duration_s:.3f}")
            if c.status == "failed":
                counts["failures"] += 1
                ET.SubElement(case, "failure", message=_x(c.message)).text = _x(c.traceback or c.message)
            elif c.status == "skipped":
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=_x(c.message))
        if nb is not None and _failed_outside_checks(nb):
            counts["tests"] += 1
            counts["errors"] += 1
            text = nb.error or f"notebook {nb.status}"
            case = ET.SubElement(suite, "testcase", classname=_x(name), name="notebook", time="0.000")
            ET.SubElement(case, "error", message=_x(text.splitlines()[0]), type=nb.status).text = _x(text)
        suite_time = nb.duration_s if nb is not None else sum(c.duration_s for c in checks)
        _set_counts(suite, counts, suite_time)
        totals += counts
    _set_counts(root, totals, results.duration_s)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _set_counts(el: ET.Element, counts: Counter[str], seconds: float) -> None:
    for key in ("tests", "failures", "errors", "skipped"):
        el.set(key, str(counts[key]))
    el.set("time", f"{seconds:.3f}")


# --- history and latest ------------------------------------------------------------------


def read_history(path: Path) -> list[HistoryEntry]:
    """Every readable entry; a line cut short by a crash or edited by hand is skipped."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entries.append(HistoryEntry.model_validate_json(line))
        except ValidationError:
            continue
    return entries


def _append_history(path: Path, entry: HistoryEntry) -> None:
    line = entry.model_dump_json() + "\n"
    with path.open("a+b") as f:
        # A writer killed mid-line left no newline; without one ours would be glued to its tail.
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))


def _point_latest(link: Path, run_dir: Path) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(run_dir, link.parent), tmp)
    os.replace(tmp, link)


# --- HTML --------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(_x(str(text)), quote=True)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; }
.verdict { display: inline-block; padding: .2rem .7rem; border-radius: 4px; color: #fff; font-weight: bold; }
.passed { background: #2e7d32; } .failed { background: #c62828; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: bold; } dd { margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ddd; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.id { font-family: monospace; white-space: nowrap; }
pre { white-space: pre-wrap; font-size: .85em; margin: .3rem 0; }
"""


def _html_report(results: RunResults, history: list[HistoryEntry]) -> str:
    t = results.totals
    verdict = "passed" if results.ok else "failed"
    facts = {
        "env": results.env,
        "started": results.started_at,
        "duration": _duration(results.duration_s),
        "checks": f"{t.passed} passed, {t.failed} failed, {t.skipped} skipped",
        "notebooks": f"{len(results.notebooks)} run, {t.notebooks_failed} failed",
    }
    if results.only:
        facts["only"] = ", ".join(results.only)
    figures = [
        _status_bars("Checks by notebook", [c.notebook for c in results.checks], results.checks),
        _status_bars("Checks by section", [f"{c.notebook}.{c.section}" for c in results.checks], results.checks),
        _slowest(results.checks),
        _duration_histogram(results.checks),
        _trend(history, results.env),
    ]
    # plotly.js is ~5 MB: inline it with the first figure only, the others reuse it.
    charts = "\n".join(
        pio.to_html(fig, include_plotlyjs=i == 0, full_html=False, config={"displaylogo": False})
        for i, fig in enumerate(figures)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Workbook run {_e(results.run_id)}</title>
<style>{_CSS}</style>
</head><body>
<h1>Run {_e(results.run_id)} <span class="verdict {verdict}">{verdict.upper()}</span></h1>
<dl>{"".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts.items())}</dl>
<h2>Failures</h2>
{_failures_table(results)}
<h2>Charts</h2>
{charts}
</body></html>
"""


def _failures_table(results: RunResults) -> str:
    rows = [
        (nb.name, f"notebook {nb.status}", nb.error, "", nb.duration_s)
        for nb in results.notebooks
        if _failed_outside_checks(nb)
    ] + [(c.id, "failed", c.message, c.traceback, c.duration_s) for c in results.checks if c.status == "failed"]
    if not rows:
        return "<p>None.</p>"
    body = "".join(
        f'<tr><td class="id">{_e(what)}</td><td>{_e(status)}</td><td><pre>{_e(message)}</pre>'
        + (f"<details><summary>traceback</summary><pre>{_e(tb)}</pre></details>" if tb else "")
        + f"</td><td>{_duration(seconds)}</td></tr>"
        for what, status, message, tb, seconds in rows
    )
    return f"<table><tr><th>check</th><th>status</th><th>message</th><th>duration</th></tr>{body}</table>"


def _layout(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white", margin=dict(l=60, r=20, t=50, b=60))
    return fig


def _status_bars(title: str, keys: list[str], checks: list[CheckResult]) -> go.Figure:
    order = list(dict.fromkeys(keys))
    counts = Counter(zip(keys, (c.status for c in checks)))
    fig = go.Figure(
        [go.Bar(name=s, x=order, y=[counts[k, s] for k in order], marker_color=COLORS[s]) for s in COLORS]
    )
    fig.update_layout(barmode="stack", yaxis_title="checks")
    return _layout(fig, title)


def _slowest(checks: list[CheckResult]) -> go.Figure:
    slow = sorted(checks, key=lambda c: c.duration_s, reverse=True)[:SLOWEST][::-1]  # slowest on top
    fig = go.Figure(
        go.Bar(
            x=[c.duration_s for c in slow],
            y=[c.id for c in slow],
            orientation="h",
            marker_color=[COLORS[c.status] for c in slow],
        )
    )
    fig.update_layout(xaxis_title="seconds")
    fig.update_yaxes(automargin=True)
    return _layout(fig, f"{SLOWEST} slowest checks", height=max(300, 120 + 28 * len(slow)))


def _duration_histogram(checks: list[CheckResult]) -> go.Figure:
    fig = go.Figure(go.Histogram(x=[c.duration_s for c in checks], marker_color="#546e7a"))
    fig.update_layout(xaxis_title="seconds", yaxis_title="checks", bargap=0.05)
    return _layout(fig, "Check durations")


def _trend(history: list[HistoryEntry], env: str) -> go.Figure:
    # Runs against other environments have other check counts and latencies; mixing them is noise.
    runs = [h for h in history if h.env == env][-TREND_RUNS:]
    x = [h.run_id for h in runs]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=x, y=[h.passed for h in runs], name="passed", line_color=COLORS["passed"]))
    fig.add_trace(go.Scatter(x=x, y=[h.failed for h in runs], name="failed", line_color=COLORS["failed"]))
    fig.add_trace(
        go.Scatter(
            x=x, y=[h.duration_s for h in runs], name="duration (s)", line=dict(color="#546e7a", dash="dot")
        ),
        secondary_y=True,
    )
    fig.update_traces(mode="lines+markers")
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text="checks", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="seconds", rangemode="tozero", secondary_y=True)
    return _layout(fig, f"Last {len(runs)} runs on {env}")
