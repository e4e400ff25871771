"""The services the embedded stack runs, in start order; platform services join here."""

from __future__ import annotations

from workbook.stack.auth import AuthService
from workbook.stack.backend import BackendService
from workbook.stack.clickhouse import ClickHouse
from workbook.stack.llm_standin import LlmStandin
from workbook.stack.oidc import OidcProvider
from workbook.stack.postgres import Postgres
from workbook.stack.redis import Redis
from workbook.stack.service import ServiceSpec

# Two backend instances: WebSocket events must cross between them through Redis.
SERVICES: list[ServiceSpec] = [Postgres(), Redis(), ClickHouse(), OidcProvider(), LlmStandin(),
                               AuthService(), BackendService(1), BackendService(2)]

