"""The platform's ClickHouse: a clickhouse-connect client used from asyncio, and its tables.

clickhouse-connect is synchronous; calls run in worker threads. One client serves them all,
so it must not bind queries to one server session (concurrent queries in a session fail).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

# Monthly partitions keep retention cheap: the TTL drops whole old months.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS workload_events (
        user_id String, ts DateTime, workload LowCardinality(String), model LowCardinality(String),
        requests UInt32, prompt_tokens UInt64, completion_tokens UInt64, latency_ms Float64
    ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (user_id, ts) TTL ts + INTERVAL 13 MONTH""",
    """CREATE TABLE IF NOT EXISTS usage_events (
        run_id String, seq UInt32, user_id String, agent LowCardinality(String), model LowCardinality(String),
        prompt_tokens UInt64, completion_tokens UInt64, cost_usd Float64, ts DateTime64(3)
    ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (user_id, ts, run_id, seq)""",
    """CREATE TABLE IF NOT EXISTS corpus (
        entry_id String, owner_id String, title String, content String, tags Array(String), created_at DateTime64(3)
    ) ENGINE = MergeTree ORDER BY (owner_id, entry_id)""",
)


class ClickHouse:
    def __init__(self, url: str, user: str, password: str | None, database: str, timeout_s: float):
        self._args = dict(dsn=url, username=user, password=password or "", database=database,
                          connect_timeout=timeout_s, send_receive_timeout=timeout_s,
                          autogenerate_session_id=False)
        self._client: Client | None = None

    def _get(self) -> Client:
        if self._client is None:
            self._client = clickhouse_connect.get_client(**self._args)
        return self._client

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            result = self._get().query(sql, parameters=parameters or {})
            return [dict(zip(result.column_names, row)) for row in result.result_rows]
        return await asyncio.to_thread(run)

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        await asyncio.to_thread(lambda: self._get().command(sql, parameters=parameters or {}))

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        if rows:
            await asyncio.to_thread(lambda: self._get().insert(table, list(rows), column_names=list(columns)))

    async def create_schema(self) -> None:
        for statement in SCHEMA:
            await self.command(statement)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
