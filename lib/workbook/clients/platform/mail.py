"""Client of the env's test mailbox: the SMTP stand-in's read API (`standins/mail`).

An env without a `mail` service has no mailbox the workbook can read (staging sends through
its real relay): `mailbox_for` skips the calling check with that reason.
"""

from __future__ import annotations

import re
from typing import Any

from workbook.checks import skip
from workbook.clients.platform.common import ApiClient, expect
from workbook.clients.scope import Check
from workbook.params import Env
from workbook.polling import poll

TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_\-]+)")


class AsyncMailbox(ApiClient):
    def __init__(self, env: Env, service: str = "mail"):
        super().__init__(env, service)
        self._key = env.service(service).secret() or ""

    async def messages(self, to: str) -> list[dict[str, Any]]:
        resp = await self.get("/_standin/messages", params={"to": to}, token=self._key)
        return expect(resp, 200, f"mailbox of {to}").json()["messages"]

    async def clear(self, to: str) -> None:
        expect(await self.delete("/_standin/messages", params={"to": to}, token=self._key), 200, f"clear {to}")

    async def arrived(self, to: str, subject: str, count: int = 1, within_s: float = 5.0) -> list[dict[str, Any]]:
        """The messages to `to` with `subject`, once `count` of them are there."""
        async def read() -> list[dict[str, Any]]:
            return [m for m in await self.messages(to) if m["subject"] == subject]

        return await poll(read, until=lambda got: len(got) >= count, within_s=within_s,
                          what=f"{count} email(s) {subject!r} to {to}")


def mailbox_for(ck: Check, env: Env) -> AsyncMailbox:
    """The env's test mailbox, closed with the check; skips the check where there is none."""
    if "mail" not in env.services:
        skip(f"env '{env.name}' has no test mailbox (services.mail): its emails go to a real relay")
    box = AsyncMailbox(env)
    ck.defer(box.aclose)
    return box


def link_token(message: dict[str, Any]) -> str:
    """The token of the one link in an email's text."""
    found = TOKEN.findall(message["text"])
    assert len(found) == 1, f"expected one link with a token in {message['subject']!r}, found {len(found)}"
    return found[0]
