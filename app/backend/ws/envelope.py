"""The one shape of every message the gateway sends:
`{type, event_id, run_id, thread_id, timestamp, payload}`.

Events of a thread (a run's steps, messages) carry the thread's event id: an integer that
grows by one per event of that thread, the position `resume` counts from. Replies that
belong to one connection only (acks, errors) carry `event_id: null`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

# Close codes the gateway uses besides the standard ones (1000 normal, 1001 going away,
# 1009 message too big, 1011 ping timeout or internal error).
CLOSE_AUTH_ENDED = 4401  # the token expired or was revoked while the socket was open
CLOSE_SLOW_CONSUMER = 4408  # the client did not read its events fast enough


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(type_: str, payload: dict[str, Any] | None = None, *, event_id: int | None = None,
             run_id: str | None = None, thread_id: str | None = None) -> dict[str, Any]:
    return {"type": type_, "event_id": event_id, "run_id": run_id, "thread_id": thread_id,
            "timestamp": now_iso(), "payload": payload or {}}


def error(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An `error` envelope; `code` is machine-readable, the socket stays open."""
    return envelope("error", {"code": code, "detail": detail, **extra})
