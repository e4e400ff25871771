"""Client of the payment provider stand-in (`standins/payments`): the hosted checkout page a
customer pays on, and its event log with redelivery (a resend, a shifted timestamp, a replay).

An env without a `payments` service (a real provider) skips the calling check with the reason.
"""

from __future__ import annotations

from typing import Any

from workbook.checks import skip
from workbook.clients.platform.common import ApiClient, expect
from workbook.clients.scope import Check
from workbook.params import Env


class AsyncPayments(ApiClient):
    def __init__(self, env: Env, service: str = "payments"):
        super().__init__(env, service)
        self._key = env.service(service).secret() or ""

    async def pay(self, checkout_url: str) -> dict[str, Any]:
        """The customer presses Pay on the hosted page: the event id and how its webhook delivery went."""
        return expect(await self.post(checkout_url), 200, "pay the checkout session").json()

    async def events(self, user_id: str) -> list[dict[str, Any]]:
        resp = await self.get("/_standin/events", params={"client_reference_id": user_id}, token=self._key)
        return expect(resp, 200, "payment events").json()["events"]

    async def redeliver(self, event_id: str, *, timestamp_offset_s: int = 0, replay: bool = False) -> dict[str, Any]:
        resp = await self.post(f"/_standin/events/{event_id}/deliver", token=self._key,
                               json={"timestamp_offset_s": timestamp_offset_s, "replay": replay})
        return expect(resp, 200, f"redeliver {event_id}").json()


def payments_for(ck: Check, env: Env) -> AsyncPayments:
    if "payments" not in env.services:
        skip(f"env '{env.name}' has no payment stand-in (services.payments): webhooks come from a real provider")
    client = AsyncPayments(env)
    ck.defer(client.aclose)
    return client
