"""The payment provider stand-in (`python -m standins.payments`): Stripe-style checkout sessions
and webhooks signed with HMAC-SHA256 over timestamp and body.

The password the stack hands it is the platform's secret API key; the webhook signing secret
is a second stack secret (`payments-webhook`) the backends are given too. Each backend
registers its webhook URL with the stand-in when it is prepared (`register_webhook`).
"""

from __future__ import annotations

import sys

import httpx

from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths, stack_secret

WEBHOOK_SECRET = "payments-webhook"


class PaymentsStandin(ServiceSpec):
    name = "payments"
    start_timeout_s = 30.0

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        return Launch(argv=[sys.executable, "-m", "standins.payments", "--host", "127.0.0.1", "--port", str(port)],
                      env={"PAYMENTS_STANDIN_ENV": "local", "PAYMENTS_STANDIN_API_KEY": password,
                           "PAYMENTS_STANDIN_WEBHOOK_SECRET": stack_secret(paths, WEBHOOK_SECRET)})

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        r = httpx.get(f"{url}/health", timeout=timeout)
        r.raise_for_status()
        return f"payments-standin {r.json()['version']}"


def register_webhook(provider_url: str, api_key: str, webhook_url: str, timeout: float = 10.0) -> None:
    r = httpx.post(f"{provider_url}/v1/webhook_endpoints", json={"url": webhook_url}, timeout=timeout,
                   headers={"Authorization": f"Bearer {api_key}"})
    if r.status_code != 200:
        raise RuntimeError(f"the payment stand-in refused the webhook endpoint: {r.status_code} {r.text[:200]}")
