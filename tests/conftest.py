"""Shared fixtures for the workbook's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests_support import params_text


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project root (params/local.yaml without services) that workbook uses."""
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "local.yaml").write_text(params_text())
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv("WORKBOOK_ROOT", str(tmp_path))
    return tmp_path
