"""report.html: one self-contained page (no network), in the order a person reads it.

The verdict, the secret scan and the leftovers sweep on top; then failures (message, traceback); then checks the
history marks flaky or slower; then, when the history holds a run of another env made from
the same code, the two side by side; then every check, failures first, with its last outcomes,
filterable by status and notebook and searchable by id (a run of a thousand checks stays
usable); then the charts.
"""

from __future__ import annotations

import html

import plotly.io as pio

from workbook.results import CheckResult, RunResults
from workbook.runner import charts
from workbook.runner.compare import Comparison, label, measurement_text, status_text
from workbook.runner.history import LAST_N, CheckTrend, HistoryEntry
from workbook.runner.junit import failed_outside_checks, xml_safe

MESSAGE_CHARS = 200  # of a message in the all-checks table; the failures table has it whole
ORDER = {"failed": 0, "skipped": 1, "passed": 2}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; }
.verdict { display: inline-block; padding: .2rem .7rem; border-radius: 4px; color: #fff; font-weight: bold; }
.verdict.passed { background: #2e7d32; } .verdict.failed { background: #c62828; }
.secrets { font-weight: bold; } .secrets.clean { color: #2e7d32; } .secrets.found { color: #c62828; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: bold; } dd { margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ddd; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.id { font-family: monospace; white-space: nowrap; }
td.last { white-space: nowrap; }
td.status.failed { color: #c62828; font-weight: bold; } td.status.skipped { color: #757575; }
pre { white-space: pre-wrap; font-size: .85em; margin: .3rem 0; }
.o { display: inline-block; width: .8em; height: .8em; margin-right: 2px; border-radius: 2px; }
.o.passed { background: #2e7d32; } .o.failed { background: #c62828; } .o.skipped { background: #bdbdbd; }
.flag { display: inline-block; padding: 0 .4rem; border-radius: 3px; font-size: .85em; margin-right: .3rem; }
.flag.flaky { background: #fff3e0; color: #e65100; } .flag.slower { background: #e3f2fd; color: #0d47a1; }
.filters { display: flex; gap: 1rem; align-items: center; margin: .5rem 0; }
.filters input { width: 24rem; }
"""

_FILTER_JS = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("#checks tbody tr"));
  var status = document.getElementById("filter-status");
  var notebook = document.getElementById("filter-notebook");
  var search = document.getElementById("filter-search");
  var shown = document.getElementById("filter-shown");
  function apply() {
    var s = status.value, n = notebook.value, q = search.value.trim().toLowerCase(), count = 0;
    rows.forEach(function (r) {
      var ok = (!s || r.dataset.status === s) && (!n || r.dataset.notebook === n) && (!q || r.dataset.id.indexOf(q) >= 0);
      r.hidden = !ok;
      if (ok) { count += 1; }
    });
    shown.textContent = count + " of " + rows.length + " checks";
  }
  status.addEventListener("change", apply);
  notebook.addEventListener("change", apply);
  search.addEventListener("input", apply);
  apply();
})();
"""


def _e(text: object) -> str:
    return html.escape(xml_safe(str(text)), quote=True)


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def render(results: RunResults, history: list[HistoryEntry], trends: dict[str, CheckTrend],
           comparison: Comparison | None) -> str:
    t = results.totals
    verdict = "passed" if results.green else "failed"
    facts = {
        "env": results.env,
        "code": f"{results.commit[:12]}{' (uncommitted changes)' if results.dirty else ''}" if results.commit
        else "unknown (not a git checkout)",
        "started": results.started_at,
        "duration": duration(results.duration_s),
        "checks": f"{t.passed} passed, {t.failed} failed, {t.skipped} skipped",
        "notebooks": f"{len(results.notebooks)} run, {t.notebooks_failed} failed",
    }
    if results.only:
        facts["only"] = ", ".join(results.only)
    if results.shard:
        facts["shard"] = results.shard
    if results.merged_from:
        facts["merged from"] = ", ".join(results.merged_from)
    figures = [
        charts.status_bars("Checks by notebook", [c.notebook for c in results.checks], results.checks),
        charts.status_bars("Checks by section", [f"{c.notebook}.{c.section}" for c in results.checks], results.checks),
        charts.slowest(results.checks),
        charts.duration_histogram(results.checks),
        charts.budgets(results.checks),
        charts.trend(history, results.env),
    ]
    # plotly.js is ~5 MB: inline it with the first figure only, the others reuse it.
    rendered = "\n".join(
        pio.to_html(fig, include_plotlyjs=i == 0, full_html=False, config={"displaylogo": False})
        for i, fig in enumerate(f for f in figures if f is not None)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Workbook run {_e(results.run_id)}</title>
<style>{_CSS}</style>
</head><body>
<h1>Run {_e(results.run_id)} <span class="verdict {verdict}">{verdict.upper()}</span></h1>
{_secrets(results)}
{_leftovers(results)}
<dl>{"".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts.items())}</dl>
<h2 id="failures">Failures</h2>
{_failures_table(results)}
{_flagged(results, trends)}
{_comparison(comparison)}
<h2 id="all-checks">All checks</h2>
{_checks_table(results, trends)}
<h2 id="charts">Charts</h2>
{rendered}
<script>{_FILTER_JS}</script>
</body></html>
"""


def _secrets(results: RunResults) -> str:
    n = len(results.secret_hits)
    scope = f"{results.secrets_checked} secret(s) looked for in {results.files_scanned} file(s), in every common encoding"
    if not n:
        return f'<p id="secrets" class="secrets clean">0 secrets found <small>({_e(scope)})</small></p>'
    items = "".join(f"<li>{_e(h.file)}: {_e(h.encoding)} ({_e(h.secret)})</li>" for h in results.secret_hits)
    return f'<p id="secrets" class="secrets found">{n} secret(s) found <small>({_e(scope)})</small></p><ul>{items}</ul>'


def _leftovers(results: RunResults) -> str:
    report = results.leftovers
    if report is None:
        return ""
    swept = [s.store for s in report.stores if s.swept]
    notes = [f"{s.store} not swept: {s.reason}" for s in report.stores if not s.swept]
    notes += [f"{s.store}: {s.reason}" for s in report.stores if s.swept and s.reason]
    scope = f"swept {', '.join(swept) or 'nothing'}" + "".join(f"; {n}" for n in notes)
    if not report.total:
        return f'<p id="leftovers" class="secrets clean">0 leftovers <small>({_e(scope)})</small></p>'
    rows = "".join(f'<tr><td>{_e(i.store)}</td><td class="id">{_e(i.where)}</td><td>{i.count}</td>'
                   f'<td class="id">{"<br>".join(_e(c) for c in i.checks) or "(not told)"}</td>'
                   f'<td class="id">{_e(i.example)}</td></tr>' for i in report.items)
    return (f'<p id="leftovers" class="secrets found">{report.total} leftovers <small>({_e(scope)})</small></p>'
            f"<table><tr><th>store</th><th>where</th><th>count</th><th>left by</th><th>e.g.</th></tr>{rows}</table>")


def _failures_table(results: RunResults) -> str:
    rows = [
        (nb.name, f"notebook {nb.status}", nb.error, "", nb.duration_s)
        for nb in results.notebooks
        if failed_outside_checks(nb)
    ] + [(c.id, "failed", c.message, c.traceback, c.duration_s) for c in results.checks if c.status == "failed"]
    if not rows:
        return "<p>None.</p>"
    body = "".join(
        f'<tr><td class="id">{_e(what)}</td><td>{_e(status)}</td><td><pre>{_e(message)}</pre>'
        + (f"<details><summary>traceback</summary><pre>{_e(tb)}</pre></details>" if tb else "")
        + f"</td><td>{duration(seconds)}</td></tr>"
        for what, status, message, tb, seconds in rows
    )
    return f"<table><tr><th>check</th><th>status</th><th>message</th><th>duration</th></tr>{body}</table>"


def _outcomes(trend: CheckTrend | None) -> str:
    if trend is None:
        return ""
    return "".join(f'<span class="o {o.status}" title="{_e(o.run_id)}: {o.status} {o.duration_s:.2f}s"></span>'
                   for o in trend.last(LAST_N))


def _flags(trend: CheckTrend | None) -> str:
    if trend is None:
        return ""
    out = ""
    if trend.flaky:
        out += f'<span class="flag flaky">flaky: {trend.flips} flip{"s" * (trend.flips != 1)}</span>'
    if trend.slower:
        out += (f'<span class="flag slower">slower: {trend.outcomes[-1].duration_s:.2f}s vs median '
                f'{trend.median_s:.2f}s</span>')
    return out


def _flagged(results: RunResults, trends: dict[str, CheckTrend]) -> str:
    ids = {c.id for c in results.checks}
    flagged = [t for t in trends.values() if t.id in ids and (t.flaky or t.slower)]
    if not flagged:
        return ""
    body = "".join(f'<tr><td class="id">{_e(t.id)}</td><td>{_flags(t)}</td><td class="last">{_outcomes(t)}</td></tr>'
                   for t in sorted(flagged, key=lambda t: (-t.flips, -t.factor, t.id)))
    return (f'<h2 id="flaky">Flaky and slower</h2><table><tr><th>check</th><th>why</th>'
            f"<th>last {LAST_N}</th></tr>{body}</table>")


def _comparison(cmp: Comparison | None) -> str:
    if cmp is None:
        return ""
    status = "".join(
        f'<tr><td class="id">{_e(d.id)}</td><td>{_e(status_text(d.a))}</td><td><pre>{_e(d.a.message if d.a else "")}</pre>'
        f'</td><td>{_e(status_text(d.b))}</td><td><pre>{_e(d.b.message if d.b else "")}</pre></td></tr>'
        for d in cmp.status)
    measured = "".join(
        f'<tr><td class="id">{_e(r.id)}</td><td>{_e(r.name)}</td><td>{_e(measurement_text(r.a))}</td>'
        f"<td>{_e(measurement_text(r.b))}</td></tr>"
        for r in cmp.measurements)
    return f"""<h2 id="compare">Compared with {_e(cmp.b.env)} on the same code</h2>
<p>This run: {_e(label(cmp.a))}; other: {_e(label(cmp.b))}.</p>
<h3>Status differs ({len(cmp.status)})</h3>
{f'<table><tr><th>check</th><th>{_e(cmp.a.env)}</th><th>message</th><th>{_e(cmp.b.env)}</th><th>message</th></tr>{status}</table>'
 if cmp.status else "<p>None.</p>"}
<h3>Measurements (value / budget)</h3>
{f'<table><tr><th>check</th><th>measure</th><th>{_e(cmp.a.env)}</th><th>{_e(cmp.b.env)}</th></tr>{measured}</table>'
 if cmp.measurements else "<p>None.</p>"}
"""


def _row(c: CheckResult, trend: CheckTrend | None) -> str:
    first = c.message.splitlines()[0] if c.message else ""
    short = first if len(first) <= MESSAGE_CHARS else first[:MESSAGE_CHARS] + "…"
    return (f'<tr data-status="{c.status}" data-notebook="{_e(c.notebook)}" data-id="{_e(c.id.lower())}">'
            f'<td class="id">{_e(c.id)}</td><td class="status {c.status}">{c.status}</td>'
            f'<td>{c.duration_s:.2f}s</td><td class="last">{_outcomes(trend)}</td><td>{_flags(trend)}</td>'
            f'<td title="{_e(first)}">{_e(short)}</td></tr>')


def _checks_table(results: RunResults, trends: dict[str, CheckTrend]) -> str:
    ordered = sorted(results.checks, key=lambda c: ORDER[c.status])  # stable: notebook order within each status
    notebooks = list(dict.fromkeys(c.notebook for c in results.checks))
    options = "".join(f'<option value="{_e(n)}">{_e(n)}</option>' for n in notebooks)
    rows = "".join(_row(c, trends.get(c.id)) for c in ordered)
    return f"""<div class="filters">
<label>status <select id="filter-status"><option value="">all</option><option value="failed">failed</option>
<option value="skipped">skipped</option><option value="passed">passed</option></select></label>
<label>notebook <select id="filter-notebook"><option value="">all</option>{options}</select></label>
<label>search <input id="filter-search" type="search" placeholder="check id, e.g. 01_auth.lockout"></label>
<span id="filter-shown"></span></div>
<table id="checks"><thead><tr><th>check</th><th>status</th><th>duration</th><th>last {LAST_N}</th><th>history</th>
<th>message</th></tr></thead><tbody>{rows}</tbody></table>"""
