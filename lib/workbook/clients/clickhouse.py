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


# The platform's tables that hold a user's rows, and the column naming the user.
USER_TABLES = {"workload_events": "user_id", "usage_events": "user_id", "corpus": "owner_id"}


def forget_user_rows(env: Env, user_id: str) -> None:
    """Delete `user_id`'s rows from the platform's tables without waiting for the mutation: a
    DELETE on workload_events takes the engine a second or two to apply, which, waited for in
    every check's cleanup, was most of a notebook's time. It runs only where there is something
    to delete; the rows are masked once the engine applies it, and mutations apply in order, so a
    later synchronous one waits for it. A server without that setting ignores it and waits."""
    ch = client(env, autogenerate_session_id=False)
    try:
        counts = ch.query(" UNION ALL ".join(f"SELECT '{t}', count() FROM {t} WHERE {c} = {{u:String}}"
                                             for t, c in USER_TABLES.items()), parameters={"u": user_id}).result_rows
        for table, n in counts:
            if n:
                ch.command(f"DELETE FROM {table} WHERE {USER_TABLES[table]} = {{u:String}}", parameters={"u": user_id},
                           settings={"lightweight_deletes_sync": 0})
    finally:
        ch.close()
