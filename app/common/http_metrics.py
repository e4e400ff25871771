"""The Prometheus metrics every service shares: requests by route and status, their latency,
dependency latency as readiness measures it, connection-pool use and circuit-breaker states.
Names and labels follow Prometheus conventions (`_total` counters, `_seconds` histograms, route
templates as labels so a user id never becomes a series)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.requests = Counter("http_requests", "HTTP requests answered, by route template and status",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency, by route template",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.dependency_latency = Histogram("dependency_check_duration_seconds",
                                            "A readiness probe of one dependency", ["dependency"],
                                            buckets=LATENCY_BUCKETS, registry=registry)

    @property
    def middleware_class(self) -> type[RequestMetrics]:
        """`app.add_middleware(m.middleware_class, metrics=m)`: outermost, so every answer is counted."""
        return RequestMetrics


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recorded)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - t0)


class StateCollector(Collector):
    """Gauges read at scrape time: breaker states and pool use, from the live objects."""

    def __init__(self, breakers: Callable[[], dict[str, Any]], pools: Callable[[], dict[str, Any]]):
        self.breakers, self.pools = breakers, pools

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily("circuit_breaker_state", "0 closed, 1 half_open, 2 open", labels=["breaker"])
        for name, breaker in self.breakers().items():
            state.add_metric([name], BREAKER_STATES[breaker.state.value])
        yield state
        checked_out = GaugeMetricFamily("db_pool_connections_in_use", "Pool connections checked out", labels=["pool"])
        size = GaugeMetricFamily("db_pool_connections", "Pool connections open", labels=["pool"])
        kept = GaugeMetricFamily("db_pool_size", "Connections the pool keeps (beyond: overflow)", labels=["pool"])
        waiting = GaugeMetricFamily("db_pool_waiting", "Checkouts waiting for a connection", labels=["pool"])
        timeouts = CounterMetricFamily("db_pool_timeouts", "Checkouts that gave up waiting (answered 503)", labels=["pool"])
        for name, pool in self.pools().items():
            checked_out.add_metric([name], pool.checkedout())
            size.add_metric([name], pool.checkedout() + pool.checkedin())
            kept.add_metric([name], pool.size())
            # app.common.pool.MeteredPool counts these; another pool class reports none.
            waiting.add_metric([name], getattr(pool, "waiting", 0))
            timeouts.add_metric([name], getattr(pool, "timeouts", 0))
        yield from (checked_out, size, kept, waiting, timeouts)


class LiveState:
    """What StateCollector reads, set once the process has built its context (a breaker map and
    its SQLAlchemy engines); empty until then, so a scrape before startup shows no series."""

    def __init__(self) -> None:
        self._breakers: dict[str, Any] = {}
        self._pools: dict[str, Any] = {}

    def set(self, context: Any) -> None:
        self._breakers = dict(getattr(context, "breakers", {}))
        self._pools = {"postgres": context.db.sync_engine.pool}

    def breakers(self) -> dict[str, Any]:
        return self._breakers

    def pools(self) -> dict[str, Any]:
        return self._pools
