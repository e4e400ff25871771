"""clickhouse-connect clients of the env's ClickHouse (a server or the chDB gateway: same HTTP)."""

from __future__ import annotations

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from workbook.params import Env
from workbook.checks import using_now
from workbook.errors import StackError


def client(env: Env, service: str = "clickhouse", **kwargs) -> Client:
    svc = env.service(service)
    using_now(service)
    try:
        options = {"connect_timeout": env.timeouts.connect_s, "send_receive_timeout": env.timeouts.request_s,
                   **kwargs}
        return clickhouse_connect.get_client(
            dsn=svc.url, username=svc.user or "default", password=svc.secret() or "",
            database=svc.database or "default", **options)
    except OperationalError as e:
        raise StackError(f"{service} at {svc.url} did not answer: {str(e).splitlines()[0]}") from None
