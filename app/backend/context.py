"""What the backend's handlers share, built once per process and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.exceptions import RedisError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agents.catalog import Catalog
from app.agents.llm import LlmClient, ProviderFailure
from app.agents.registry import Registry, registry
from app.agents.scope import Services
from app.backend import metrics
from app.backend.auth_client import AuthClient
from app.backend.db import make_engine
from app.backend.events import EventBus
from app.backend.providers import Providers
from app.backend.runs import Runner
from app.backend.tokens import TokenVerifier
from app.backend.ws.hub import Hub
from app.common import pool
from app.common.breaker import CircuitBreaker, PeerFailure
from app.common.clickhouse import ClickHouse, Login
from app.common.mail import Mailer
from app.common.redis_client import service_redis
from app.common.settings import BackendSettings


@dataclass
class Context:
    settings: BackendSettings
    db: AsyncEngine
    redis: Redis
    http: httpx.AsyncClient
    breakers: dict[str, CircuitBreaker]
    auth: AuthClient
    verifier: TokenVerifier
    hub: Hub
    bus: EventBus
    runner: Runner
    agents: Registry
    llm: LlmClient
    catalog: Catalog
    clickhouse: ClickHouse
    providers: Providers
    mailer: Mailer

    @classmethod
    def build(cls, settings: BackendSettings) -> Context:
        t = settings.dependency_timeout_s
        redis = service_redis(settings, settings.instance_id)
        http = httpx.AsyncClient()
        breaker = CircuitBreaker("auth", settings.breaker_failure_threshold, settings.breaker_reset_s,
                                 counted=(PeerFailure, httpx.TransportError, OSError, TimeoutError))
        auth = AuthClient(settings, http, breaker)
        events_breaker = CircuitBreaker("redis", settings.redis_breaker_failure_threshold,
                                        settings.redis_breaker_reset_s,
                                        counted=(RedisError, OSError, TimeoutError))
        llm_breaker = CircuitBreaker("llm", settings.llm_breaker_failure_threshold, settings.llm_breaker_reset_s,
                                     counted=(ProviderFailure,))
        db = make_engine(settings)
        for name, gauge in metrics.db_pool.items():
            gauge.set_function(lambda name=name: pool.stats(db)[name])
        hub = Hub(redis, settings.redis_retry_max_s)
        bus = EventBus(redis, hub, events_breaker, settings.ws_replay_len, settings.instance_id)
        llm = LlmClient(settings, http, llm_breaker)
        catalog = Catalog(db, redis, settings.price_cache_ttl_s)
        clickhouse = ClickHouse(
            settings.clickhouse_url, settings.clickhouse_database, t,
            admin=Login(settings.clickhouse_user, settings.secret("clickhouse_password")),
            writer=Login(settings.clickhouse_writer_user, settings.secret("clickhouse_writer_password")),
            reader=Login(settings.clickhouse_reader_user, settings.secret("clickhouse_reader_password")),
            retention_days=settings.workload_retention_days, manage_users=settings.clickhouse_manage_users)
        agents = registry(settings.test_agents)
        providers = Providers(db, http, settings)
        runner = Runner(settings, agents, Services(db=db, redis=redis, bus=bus, llm=llm, catalog=catalog,
                                                   clickhouse=clickhouse, agents=agents.runs(), endpoints=providers))
        return cls(settings=settings, db=db, redis=redis, http=http,
                   breakers={"auth": breaker, "redis": events_breaker, "llm": llm_breaker}, auth=auth,
                   verifier=TokenVerifier(auth, redis, settings.issuer, settings.audience, settings.token_leeway_s), hub=hub, bus=bus,
                   runner=runner, agents=agents, llm=llm, catalog=catalog, clickhouse=clickhouse,
                   providers=providers, mailer=Mailer(settings, t))

    def reload(self, settings: BackendSettings) -> None:
        """Settings changed by a hot reload (app.common.live_config): in force for whatever reads
        them per request, and for the runner's quotas."""
        self.settings = self.runner.settings = settings

    async def close(self) -> None:
        await self.runner.stop_all()
        await self.hub.stop()
        await self.http.aclose()
        await self.redis.aclose()
        await self.db.dispose()
        self.clickhouse.close()
