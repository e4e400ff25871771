"""What a client needs of the running check: its namespace and its cleanup stack."""

from __future__ import annotations

from typing import Any, Protocol


class Check(Protocol):
    @property
    def ns(self) -> str: ...

    def defer(self, fn: Any, *args: Any) -> None: ...
