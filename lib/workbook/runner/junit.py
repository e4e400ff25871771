"""junit.xml: one testcase per check (classname = notebook.section), and one `notebook`
testcase with an error for a notebook that failed outside its checks (timeout, dead kernel,
setup cell), so CI shows it even when every recorded check passed; a run whose outputs hold a
secret gets a failed `secret_scan` testcase naming the files and encodings, and one that left
something in the stores a failed `leftovers` testcase naming what and the checks that left it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from workbook.results import NotebookResult, RunResults

# Everything XML 1.0 forbids, lone surrogates included: ElementTree would write them
# and every JUnit reader would then reject the whole file.
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    return _XML_FORBIDDEN.sub("\ufffd", text)


def failed_outside_checks(nb: NotebookResult) -> bool:
    return nb.status in ("timeout", "error") or (nb.status == "failed" and bool(nb.error))


def write_junit(results: RunResults, path: Path) -> None:
    _x = xml_safe
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
        if nb is not None and failed_outside_checks(nb):
            counts["tests"] += 1
            counts["errors"] += 1
            text = nb.error or f"notebook {nb.status}"
            case = ET.SubElement(suite, "testcase", classname=_x(name), name="notebook", time="0.000")
            ET.SubElement(case, "error", message=_x(text.splitlines()[0]), type=nb.status).text = _x(text)
        suite_time = nb.duration_s if nb is not None else sum(c.duration_s for c in checks)
        _set_counts(suite, counts, suite_time)
        totals += counts
    if results.secret_hits:
        # Not a check, yet as red as one: CI that reads only junit must see it.
        suite = ET.SubElement(root, "testsuite", name="secret_scan")
        case = ET.SubElement(suite, "testcase", classname="secret_scan", name="outputs_hold_no_secret", time="0.000")
        found = [f"{h.file}: {h.encoding} ({h.secret})" for h in results.secret_hits]
        ET.SubElement(case, "failure", message=f"{len(found)} secret(s) found in outputs").text = "\n".join(found)
        counts = Counter(tests=1, failures=1)
        _set_counts(suite, counts, 0.0)
        totals += counts
    if results.leftovers_found and results.leftovers is not None:
        suite = ET.SubElement(root, "testsuite", name="leftovers")
        case = ET.SubElement(suite, "testcase", classname="leftovers", name="run_left_nothing", time="0.000")
        found = [f"{i.store} {i.where}: {i.count} ({', '.join(i.checks) or 'not told'})" for i in results.leftovers.items]
        ET.SubElement(case, "failure", message=f"{results.leftovers_found} leftover(s) in the stores").text = _x(
            "\n".join(found))
        counts = Counter(tests=1, failures=1)
        _set_counts(suite, counts, 0.0)
        totals += counts
    _set_counts(root, totals, results.duration_s)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _set_counts(el: ET.Element, counts: Counter[str], seconds: float) -> None:
    for key in ("tests", "failures", "errors", "skipped"):
        el.set(key, str(counts[key]))
    el.set("time", f"{seconds:.3f}")
