"""asyncpg connections to the env's PostgreSQL."""

from __future__ import annotations

import asyncpg

from workbook.checks import using
from workbook.clients.scope import Check
from workbook.errors import StackError
from workbook.params import Env


async def connect(env: Env, service: str = "postgres", database: str | None = None) -> asyncpg.Connection:
    """A connection to the service's database, or to `database` on the same server."""
    svc = env.service(service)
    await using(service)
    try:
        return await asyncpg.connect(svc.url, password=svc.secret(), database=database,
                                     timeout=env.timeouts.connect_s,
                                     command_timeout=env.timeouts.request_s)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        raise StackError(f"{service} at {svc.host}:{svc.port} did not accept a connection: "
                         f"{type(e).__name__}: {e}") from None


async def for_check(env: Env, ck: Check, database: str | None = None, service: str = "postgres") -> asyncpg.Connection:
    """A connection closed when the check `ck` ends."""
    conn = await connect(env, service, database)
    ck.defer(conn.close)
    return conn
