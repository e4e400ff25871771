"""The platform's ClickHouse: clickhouse-connect clients used from asyncio, one per login.

The platform logs in three ways, each for its own work:
- the admin (`clickhouse_user`) runs the migrations (`app.common.clickhouse_schema.migrate`) and
  reads `system.parts` for readiness;
- the writer inserts (ingestion, usage, corpus) and changes corpus rows;
- the reader runs every query a user's request or an agent's tool makes; its `readonly` profile
  makes ClickHouse itself refuse any write, DDL or settings change from it.

`query` reads as the reader, `insert` and `command` write as the writer, so a tool or handler
cannot pick the wrong login by accident. Every value reaches ClickHouse as a bound query
parameter (`{name:Type}` placeholders); nothing a caller gives is formatted into SQL.

clickhouse-connect is synchronous; calls run in worker threads. One client per login serves
them all, so none binds queries to a server session (concurrent queries in one session fail).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import clickhouse_connect
from clickhouse_connect.driver.client import Client

Role = Literal["admin", "writer", "reader"]


@dataclass(frozen=True)
class Login:
    user: str
    password: str | None = field(default=None, repr=False)


@dataclass
class InsertStats:
    """Inserts since the process started: readiness says degraded while the last one failed."""

    ok: int = 0
    failed: int = 0
    last_failed: bool = False
    last_error: str = ""

    def failure(self, e: Exception) -> None:
        self.failed += 1
        self.last_failed, self.last_error = True, f"{type(e).__name__}: {str(e)[:200]}"


class ClickHouse:
    def __init__(self, url: str, database: str, timeout_s: float, *, admin: Login, writer: Login, reader: Login,
                 retention_days: int = 395, manage_users: bool = False):
        self.url, self.database, self.timeout_s = url, database, timeout_s
        self.logins: dict[Role, Login] = {"admin": admin, "writer": writer, "reader": reader}
        self.retention_days = retention_days
        self.manage_users = manage_users
        self.inserts = InsertStats()
        self._clients: dict[Role, Client] = {}

    def client(self, role: Role) -> Client:
        if role not in self._clients:
            login = self.logins[role]
            self._clients[role] = clickhouse_connect.get_client(
                dsn=self.url, username=login.user, password=login.password or "", database=self.database,
                connect_timeout=self.timeout_s, send_receive_timeout=self.timeout_s,
                autogenerate_session_id=False)
        return self._clients[role]

    async def query(self, sql: str, parameters: dict[str, Any] | None = None, *,
                    role: Role = "reader") -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            result = self.client(role).query(sql, parameters=parameters or {})
            return [dict(zip(result.column_names, row)) for row in result.result_rows]
        return await asyncio.to_thread(run)

    async def command(self, sql: str, parameters: dict[str, Any] | None = None, *, role: Role = "writer",
                      settings: dict[str, Any] | None = None) -> None:
        await asyncio.to_thread(lambda: self.client(role).command(sql, parameters=parameters or {},
                                                                  settings=settings or {}))

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str],
                     types: Sequence[str] | None = None, settings: dict[str, Any] | None = None) -> int:
        """One INSERT of every row (one part on the server), as the writer; returns the rows
        written. `types` names the columns' types (no DESCRIBE first, and columns the table
        only fills itself, MATERIALIZED ones, may be given with `insert_allow_materialized_columns`)."""
        if not rows:
            return 0

        def run() -> int:
            summary = self.client("writer").insert(
                table, list(rows), column_names=list(columns),
                column_type_names=list(types) if types else None, settings=settings or {})
            return int(summary.written_rows)
        try:
            written = await asyncio.to_thread(run)
        except Exception as e:
            self.inserts.failure(e)
            raise
        self.inserts.ok += 1
        self.inserts.last_failed = False
        return written

    async def ping_ms(self) -> float:
        """A round trip as the reader, in milliseconds."""
        t0 = time.perf_counter()
        await self.query("SELECT 1")
        return (time.perf_counter() - t0) * 1000

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
