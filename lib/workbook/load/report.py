"""A load run in a notebook: its per-endpoint table and two plotly charts (percentiles per
endpoint against the budget, requests/s over the run)."""

from __future__ import annotations

import plotly.graph_objects as go
from IPython.display import display

from workbook.load.runner import LoadResult


def _show(fig: go.Figure, text: str) -> None:
    display({"application/vnd.plotly.v1+json": fig.to_plotly_json(), "text/plain": text}, raw=True)


def show_endpoints(result: LoadResult, budget_p95_ms: float) -> None:
    """p50/p95/p99 per endpoint as bars, the p95 budget as a line: which endpoint is the tail."""
    s = result.stats
    fig = go.Figure([go.Bar(name=q, x=s["endpoint"], y=s[f"{q}_ms"]) for q in ("p50", "p95", "p99")])
    fig.add_hline(y=budget_p95_ms, line_dash="dash", annotation_text=f"p95 budget {budget_p95_ms:.0f} ms")
    fig.update_layout(barmode="group", height=340, margin={"t": 40, "b": 40}, yaxis_title="ms",
                      title=f"{result.plan.journey}: {result.total_requests} requests, {result.plan.users} users, "
                            f"{result.workers} workers")
    _show(fig, s.to_string(index=False))


def show_throughput(result: LoadResult) -> None:
    """Requests/s and failures/s per second of the run, with the users running."""
    h = result.history
    fig = go.Figure([go.Scatter(x=h["second"], y=h["rps"], name="requests/s"),
                     go.Scatter(x=h["second"], y=h["failures_per_s"], name="failures/s"),
                     go.Scatter(x=h["second"], y=h["users"], name="users", yaxis="y2", line={"dash": "dot"})])
    fig.update_layout(height=300, margin={"t": 40, "b": 40}, xaxis_title="s", yaxis_title="per s",
                      yaxis2={"overlaying": "y", "side": "right", "title": "users"}, title="throughput")
    _show(fig, h.to_string(index=False))
