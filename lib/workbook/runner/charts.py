"""The report's plotly figures: results by notebook and section, the slowest checks, the
duration distribution, measurements against their budgets, and the trend across runs."""

from __future__ import annotations

from collections import Counter

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbook.results import CheckResult
from workbook.runner.history import HistoryEntry

COLORS = {"passed": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e"}
SLOWEST = 15
TREND_RUNS = 50  # enough to see a drift; more turns the x axis into noise
MEASUREMENTS = 40  # the ones closest to (or past) their budget


def _layout(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white", margin=dict(l=60, r=20, t=50, b=60))
    return fig


def status_bars(title: str, keys: list[str], checks: list[CheckResult]) -> go.Figure:
    order = list(dict.fromkeys(keys))
    counts = Counter(zip(keys, (c.status for c in checks)))
    fig = go.Figure(
        [go.Bar(name=s, x=order, y=[counts[k, s] for k in order], marker_color=COLORS[s]) for s in COLORS]
    )
    fig.update_layout(barmode="stack", yaxis_title="checks")
    return _layout(fig, title)


def slowest(checks: list[CheckResult]) -> go.Figure:
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


def duration_histogram(checks: list[CheckResult]) -> go.Figure:
    fig = go.Figure(go.Histogram(x=[c.duration_s for c in checks], marker_color="#546e7a"))
    fig.update_layout(xaxis_title="seconds", yaxis_title="checks", bargap=0.05)
    return _layout(fig, "Check durations")


def budgets(checks: list[CheckResult]) -> go.Figure | None:
    """Each measured figure as a share of its budget (100% = at the limit); None if nothing was."""
    rows = [(f"{c.id} {m.name}", m.value / m.budget * 100, f"{m.value:g} / {m.budget:g} {m.unit}")
            for c in checks for m in c.measurements if m.budget]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r[1], reverse=True)[:MEASUREMENTS][::-1]
    fig = go.Figure(go.Bar(x=[r[1] for r in rows], y=[r[0] for r in rows], orientation="h", text=[r[2] for r in rows],
                           marker_color=["#c62828" if r[1] > 100 else "#1565c0" for r in rows]))
    fig.add_vline(x=100, line_dash="dash", line_color="#c62828")
    fig.update_layout(xaxis_title="% of budget")
    fig.update_yaxes(automargin=True)
    return _layout(fig, "Measurements against their budgets", height=max(300, 120 + 28 * len(rows)))


def trend(history: list[HistoryEntry], env: str) -> go.Figure:
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
