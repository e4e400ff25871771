"""How a notebook's results look in the notebook itself: a table and a plotly chart."""

from __future__ import annotations

import html
from collections import Counter

from workbook.results import CheckResult

COLORS = {"passed": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e"}


def _table(rows: list[CheckResult]) -> str:
    order = {"failed": 0, "skipped": 1, "passed": 2}
    body = "".join(
        f"<tr><td style='color:{COLORS[r.status]}'>{r.status}</td><td>{html.escape(r.id)}</td>"
        f"<td>{r.duration_s * 1000:.0f} ms</td><td>{html.escape(r.message)}</td></tr>"
        for r in sorted(rows, key=lambda r: order[r.status])
    )
    return ("<table><tr><th>status</th><th>check</th><th>duration</th><th>message</th></tr>"
            f"{body}</table>")


def _chart(rows: list[CheckResult]) -> dict:
    """A plotly figure as plain JSON: building it through plotly.graph_objects and its
    renderers costs over a second per kernel, more than a trivial notebook's checks."""
    sections = list(dict.fromkeys(r.section for r in rows))
    counts = Counter((r.section, r.status) for r in rows)
    data = [{"type": "bar", "name": s, "x": sections, "y": [counts[(sec, s)] for sec in sections],
             "marker": {"color": COLORS[s]}} for s in COLORS]
    layout = {"barmode": "stack", "height": 320, "margin": {"t": 30, "b": 30},
              "title": {"text": "checks by section"}}
    return {"data": data, "layout": layout}


def show_summary(notebook: str, rows: list[CheckResult]) -> None:
    totals = Counter(r.status for r in rows)
    line = (f"{notebook}: {totals['passed']} passed, {totals['failed']} failed, "
            f"{totals['skipped']} skipped")
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is None or get_ipython() is None:
        print(line)
        return
    display(HTML(f"<p><b>{html.escape(line)}</b></p>{_table(rows)}"))
    if rows:
        # Stored as plotly JSON, which JupyterLab draws; no plotly.js copy in every notebook.
        display({"application/vnd.plotly.v1+json": _chart(rows), "text/plain": line}, raw=True)
    print(line)
