"""Messages as they arrived, per recipient (lower-cased address)."""

from __future__ import annotations

import email
import email.policy
import itertools
import threading
import time
from collections import defaultdict, deque
from typing import Any


class Mailbox:
    """Written by the SMTP thread, read by the HTTP thread: one lock around both."""

    def __init__(self, keep: int):
        self._lock = threading.Lock()
        self._by_rcpt: dict[str, deque[dict[str, Any]]] = defaultdict(lambda: deque(maxlen=keep))
        self._ids = itertools.count(1)

    def deliver(self, sender: str, recipients: list[str], raw: bytes, auth_user: str | None) -> None:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain", "html"))
        text = body.get_content() if body is not None else ""
        entry = {"from": sender, "to": recipients, "subject": str(msg.get("Subject", "")),
                 "headers": {k: str(v) for k, v in msg.items()}, "text": text, "auth_user": auth_user,
                 "received_at": time.time()}
        with self._lock:
            for rcpt in recipients:
                self._by_rcpt[rcpt.lower()].append({**entry, "id": next(self._ids)})

    def read(self, rcpt: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._by_rcpt.get(rcpt.lower(), ()))

    def clear(self, rcpt: str) -> int:
        with self._lock:
            return len(self._by_rcpt.pop(rcpt.lower(), ()))
