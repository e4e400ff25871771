"""The platform's packages are layered: `app.common` imports no other part of `app`; `app.agents`
stands on common alone (what it needs of the backend it defines as an interface the backend
provides); `app.auth` stands on common; `app.backend` on common and the agents. A breach names
the importing module and what it imported (tests/test_imports.py builds the graph)."""

from __future__ import annotations

from test_imports import _graph

MAY_IMPORT = {
    "app.common": {"app.common"},
    "app.agents": {"app.common", "app.agents"},
    "app.auth": {"app.common", "app.auth"},
    "app.backend": {"app.common", "app.agents", "app.backend"},
}


def _layer(module: str) -> str | None:
    return next((layer for layer in MAY_IMPORT if module == layer or module.startswith(layer + ".")), None)


def test_each_package_imports_only_the_layers_below_it() -> None:
    breaches = [(module, target) for module, targets in _graph().items() if (layer := _layer(module))
                for target in targets if target.startswith("app.") and _layer(target) not in MAY_IMPORT[layer]]
    assert not breaches, breaches
