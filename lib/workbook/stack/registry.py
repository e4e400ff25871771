"""The services the embedded stack runs, in start order; platform services join here."""

from __future__ import annotations

from workbook.stack.auth import AuthService
from workbook.stack.backend import BackendService
from workbook.stack.clickhouse import ClickHouse
from workbook.stack.llm_standin import LlmStandin, UserLlmStandin
from workbook.stack.mail import MailStandin
from workbook.stack.oidc import OidcProvider
from workbook.stack.payments import PaymentsStandin
from workbook.stack.postgres import Postgres
from workbook.stack.redis import SENTINELS, Redis, RedisReplica, RedisSentinel
from workbook.stack.service import ServiceSpec

# Two backend instances: WebSocket events must cross between them through Redis.
# Redis is a primary, a replica and three Sentinels: the platform lives through a failover. The
# mail, payment and second model provider stand-ins come before auth and the backends, which send
# email through the first, take payments from the second and let users connect the third.
SERVICES: list[ServiceSpec] = [Postgres(), Redis(), RedisReplica(), *(RedisSentinel(n) for n in SENTINELS),
                               ClickHouse(), OidcProvider(), LlmStandin(),
                               MailStandin(), PaymentsStandin(), UserLlmStandin(),
                               AuthService(), BackendService(1), BackendService(2)]

