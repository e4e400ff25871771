"""The stand-ins stay apart from what they stand in for and from what checks them: `standins`
never imports `app` (the platform under test) or `workbook`, and `workbook` never imports
`standins` (the stack only launches them as processes)."""

from __future__ import annotations

from test_imports import _graph


def test_standins_import_neither_app_nor_workbook_and_lib_never_imports_them() -> None:
    graph = _graph()
    assert any(m.startswith("standins.") for m in graph), "no standins package found"
    crossing = [(m, t) for m, targets in graph.items() for t in targets
                if (m.split(".")[0], t.split(".")[0]) in {("standins", "app"), ("standins", "workbook"),
                                                          ("workbook", "standins"), ("app", "standins")}]
    assert not crossing, crossing
