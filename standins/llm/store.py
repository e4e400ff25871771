"""What the test-control API reads and changes: injected faults and the request log.

One `Standin` per app (app.state.standin), never module state, so two apps in one process
(tests) do not share faults. Every change happens without an `await` in between, so requests
handled concurrently on the event loop need no lock: one request consumes one count.
"""

from __future__ import annotations

import secrets
from collections import deque
from itertools import count, islice
from typing import Any

from standins.llm.schemas import FaultSpec
from standins.llm.settings import LlmStandinSettings


class Fault:
    def __init__(self, spec: FaultSpec):
        self.id = f"fault_{secrets.token_hex(8)}"
        self.spec = spec
        self.remaining = spec.count

    def matches(self, user: str | None, model: str, role: str) -> bool:
        s = self.spec
        return s.user == user and s.model in (None, model) and s.role in (None, role)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, **self.spec.model_dump(exclude_none=True), "remaining": self.remaining}


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(spec)
        self._faults.append(fault)
        return fault

    def take(self, user: str | None, model: str, role: str) -> Fault | None:
        """Spend one count of the first fault (in insertion order) matching this request."""
        for fault in self._faults:
            if fault.matches(user, model, role):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def of(self, user: str | None) -> list[Fault]:
        return [f for f in self._faults if user is None or f.spec.user == user]

    def clear(self, user: str) -> None:
        self._faults = [f for f in self._faults if f.spec.user != user]


class RequestLog:
    """The last `maxlen` chat requests, oldest first; ids keep increasing across evictions."""

    def __init__(self, maxlen: int):
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._ids = count(1)

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"id": next(self._ids), **entry}
        self._entries.append(entry)
        return entry

    def select(self, user: str | None, since: int, limit: int) -> list[dict[str, Any]]:
        return list(islice((e for e in self._entries if e["id"] > since and (user is None or e["user"] == user)),
                           limit))

    def clear(self, user: str) -> None:
        self._entries = deque((e for e in self._entries if e["user"] != user), maxlen=self._entries.maxlen)


class Standin:
    def __init__(self, settings: LlmStandinSettings):
        self.settings = settings
        self.faults = Faults()
        self.log = RequestLog(settings.log_len)
