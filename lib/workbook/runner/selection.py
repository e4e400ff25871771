"""`--only` patterns: which notebooks, sections and checks a run executes.

A pattern is a glob over check ids (`<notebook>.<section>.<check>`) and matches an id or any
id below it, so `01_auth` runs the notebook, `01_auth.jwt_validation` one section, and
`*.jwt_*` matching sections everywhere. Selection happens before execution by dropping the
check cells that do not match, so a skipped check never runs at all; setup cells stay.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from typing import Any

Notebook = dict[str, Any]  # the notebook's JSON; nbformat is slow to import, this is not

SECTION_RE = re.compile(r"""^\s*section\(\s*["']([a-z0-9_]+)["']""", re.M)
CHECK_RE = re.compile(r"""^\s*(?:async\s+)?with\s+check\(\s*["']([a-z0-9_]+)["']""", re.M)


def parse_patterns(raw: list[str] | None) -> list[str]:
    """Split comma-separated values; strip a trailing `.ipynb` so file names work too."""
    out = []
    for item in raw or []:
        for p in item.split(","):
            p = p.strip()
            if p:
                out.append(p[: -len(".ipynb")] if p.endswith(".ipynb") else p)
    return out


def matches(check_id: str, patterns: list[str]) -> bool:
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(check_id, p) or fnmatch.fnmatchcase(check_id, p + ".*") for p in patterns)


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def check_ids(nb: Notebook, notebook: str) -> list[tuple[int, str]]:
    """(cell index, check id) for every check cell, following section() calls in order."""
    section = ""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        source = _source(cell)
        for name in SECTION_RE.findall(source):
            section = name
        m = CHECK_RE.search(source)
        if m:
            found.append((i, f"{notebook}.{section}.{m.group(1)}"))
    return found


def select(nb: Notebook, notebook: str, patterns: list[str]) -> Notebook | None:
    """The notebook with unselected check cells removed, or None when no check is selected."""
    ids = check_ids(nb, notebook)
    if not patterns:
        return nb
    keep = {i for i, cid in ids if matches(cid, patterns)}
    if not keep:
        return None
    drop = {i for i, _ in ids} - keep
    out = copy.deepcopy(nb)
    out["cells"] = [c for i, c in enumerate(nb["cells"]) if i not in drop]
    return out
