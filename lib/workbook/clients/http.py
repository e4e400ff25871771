"""httpx clients for the env's HTTP services, with the env's timeouts."""

from __future__ import annotations

import httpx

from workbook.checks import using
from workbook.clients import tls
from workbook.params import Env


def client(env: Env, service: str) -> httpx.AsyncClient:
    svc = env.service(service)
    timeout = httpx.Timeout(env.timeouts.request_s, connect=env.timeouts.connect_s)

    async def lock(_: httpx.Request) -> None:
        await using(service)

    return httpx.AsyncClient(base_url=svc.url, timeout=timeout, event_hooks={"request": [lock]}, verify=tls.context())
