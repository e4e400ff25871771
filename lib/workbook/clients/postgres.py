"""asyncpg connections to the env's PostgreSQL."""

from __future__ import annotations

import asyncpg

from workbook.env import Env
from workbook.errors import StackError


async def connect(env: Env, service: str = "postgres") -> asyncpg.Connection:
    svc = env.service(service)
    try:
        return await asyncpg.connect(svc.url, password=svc.secret(), timeout=env.timeouts.connect_s,
                                     command_timeout=env.timeouts.request_s)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        raise StackError(f"{service} at {svc.host}:{svc.port} did not accept a connection: "
                         f"{type(e).__name__}: {e}") from None
