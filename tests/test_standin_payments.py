"""The payment stand-in as the stack starts it: its API needs the platform's key, a payment
sends a webhook signed the way the platform verifies it (app.backend.billing), and a
redelivery with a shifted timestamp or a replay is what it says it is."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app.backend.billing import SignatureError, verify_signature
from workbook.stack.manager import Stack
from workbook.stack.payments import WEBHOOK_SECRET, PaymentsStandin, register_webhook
from workbook.stack.state import stack_secret

TOLERANCE_S = 300


class Receiver(BaseHTTPRequestHandler):
    got: list[tuple[bytes, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.got.append((body, self.headers["Stripe-Signature"]))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"received": true}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def payments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    stack = Stack(root=tmp_path_factory.mktemp("paystack"), services=[PaymentsStandin()])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack.up()
        url, key = stack.state().services["payments"].url, stack_secret(stack.paths, "payments")
        register_webhook(url, key, f"http://127.0.0.1:{server.server_address[1]}/webhook")
        yield {"url": url, "key": key, "secret": stack_secret(stack.paths, WEBHOOK_SECRET)}
    finally:
        server.shutdown()
        stack.down()


def _paid(p: dict[str, str]) -> dict[str, Any]:
    session = httpx.post(f"{p['url']}/v1/checkout/sessions", headers={"Authorization": f"Bearer {p['key']}"},
                         json={"client_reference_id": "u1", "amount_total": 900, "metadata": {"plan": "early"}})
    assert session.status_code == 200, session.text
    return httpx.post(session.json()["url"]).json()


def test_api_needs_the_platform_key(payments: dict[str, str]) -> None:
    resp = httpx.post(f"{payments['url']}/v1/checkout/sessions", json={"client_reference_id": "u", "amount_total": 1},
                      headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 401


def test_payment_sends_a_webhook_the_platform_accepts(payments: dict[str, str]) -> None:
    Receiver.got.clear()
    paid = _paid(payments)
    body, header = Receiver.got[-1]
    verify_signature(payments["secret"], header, body, TOLERANCE_S)
    event = json.loads(body)
    assert (event["id"], event["type"]) == (paid["event_id"], "checkout.session.completed")
    assert event["data"]["object"]["client_reference_id"] == "u1"
    with pytest.raises(SignatureError):
        verify_signature("another-secret", header, body, TOLERANCE_S)
    with pytest.raises(SignatureError):
        verify_signature(payments["secret"], header, body.replace(b"u1", b"u2"), TOLERANCE_S)


def test_shifted_redelivery_is_stale_and_replay_is_byte_for_byte(payments: dict[str, str]) -> None:
    Receiver.got.clear()
    paid = _paid(payments)
    auth = {"Authorization": f"Bearer {payments['key']}"}
    httpx.post(f"{payments['url']}/_standin/events/{paid['event_id']}/deliver", headers=auth,
               json={"timestamp_offset_s": -(TOLERANCE_S + 60)})
    body, header = Receiver.got[-1]
    with pytest.raises(SignatureError) as e:
        verify_signature(payments["secret"], header, body, TOLERANCE_S, now=time.time())
    assert e.value.code == "stale_timestamp"
    httpx.post(f"{payments['url']}/_standin/events/{paid['event_id']}/deliver", headers=auth, json={"replay": True})
    assert Receiver.got[-1] == Receiver.got[0]
