"""Where the checkout is: params/, notebooks/ and outputs/ live under it."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout that holds params/ and notebooks/ (WORKBOOK_ROOT overrides)."""
    if "WORKBOOK_ROOT" in os.environ:
        return Path(os.environ["WORKBOOK_ROOT"]).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "params").is_dir():
        return here
    return Path.cwd().resolve()
