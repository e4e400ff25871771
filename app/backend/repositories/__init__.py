"""The backend's repositories: the SQL behind one user action each, one transaction each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StaleVersion(Exception):
    """A write sent with a version that is no longer the record's: `current` is."""

    current: int
