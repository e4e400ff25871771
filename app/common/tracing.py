"""OpenTelemetry for every service: the SDK, FastAPI/httpx/asyncpg/redis instrumentation, and
where the spans go.

Incoming W3C `traceparent` headers are honoured and outgoing httpx calls carry one, so one
request is one trace across auth, the backend and the model. Spans are exported by a batch
span processor (a background thread: a request never waits on the exporter). `otel_exporter:
clickhouse` writes them into `otel_traces` with the OpenTelemetry Collector ClickHouse
exporter's own schema (created if missing, as the Collector's `create_schema` does), so the
same queries work on a local stack and on a Collector-fed ClickHouse; `otlp` sends them to a
Collector.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import SpanKind

from app.common.settings import _ServiceSettings

log = logging.getLogger("app.tracing")

TABLE = "otel_traces"
# The Collector's ClickHouse exporter DDL (exporter/clickhouseexporter, traces table).
DDL = """CREATE TABLE IF NOT EXISTS {db}.otel_traces (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (Timestamp DateTime64(9), Name LowCardinality(String),
                   Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    Links Nested (TraceId String, SpanId String, TraceState String,
                  Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
TTL toDateTime(Timestamp) + toIntervalDay(3)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""

_KINDS = {0: "Internal", 1: "Server", 2: "Client", 3: "Producer", 4: "Consumer"}
_STATUS = {0: "Unset", 1: "Ok", 2: "Error"}


def _ts(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + f".{ns % 1_000_000_000:09d}"


def _attrs(attrs: Any) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else json.dumps(v if not isinstance(v, tuple) else list(v))
            for k, v in (attrs or {}).items()}


def row(span: ReadableSpan) -> dict[str, Any]:
    """One span as the Collector's ClickHouse exporter writes it."""
    ctx, parent = span.get_span_context(), span.parent
    assert ctx is not None and span.start_time is not None and span.end_time is not None
    return {
        "Timestamp": _ts(span.start_time), "TraceId": f"{ctx.trace_id:032x}", "SpanId": f"{ctx.span_id:016x}",
        "ParentSpanId": f"{parent.span_id:016x}" if parent else "", "TraceState": str(ctx.trace_state or ""),
        "SpanName": span.name, "SpanKind": _KINDS.get(span.kind.value, "Unspecified"),
        "ServiceName": str(span.resource.attributes.get("service.name", "")),
        "ResourceAttributes": _attrs(span.resource.attributes),
        "ScopeName": span.instrumentation_scope.name if span.instrumentation_scope else "",
        "ScopeVersion": (span.instrumentation_scope.version or "") if span.instrumentation_scope else "",
        "SpanAttributes": _attrs(span.attributes), "Duration": span.end_time - span.start_time,
        "StatusCode": _STATUS.get(span.status.status_code.value, "Unset"),
        "StatusMessage": span.status.description or "",
        "Events.Timestamp": [_ts(e.timestamp) for e in span.events],
        "Events.Name": [e.name for e in span.events], "Events.Attributes": [_attrs(e.attributes) for e in span.events],
        "Links.TraceId": [f"{link.context.trace_id:032x}" for link in span.links],
        "Links.SpanId": [f"{link.context.span_id:016x}" for link in span.links],
        "Links.TraceState": [str(link.context.trace_state or "") for link in span.links],
        "Links.Attributes": [_attrs(link.attributes) for link in span.links],
    }


class ClickHouseSpanExporter(SpanExporter):
    """Spans into `otel_traces` over ClickHouse's HTTP interface (runs in the batch processor's thread)."""

    def __init__(self, url: str, database: str, user: str, password: str | None, timeout_s: float = 5.0):
        self.database = database
        self.client = httpx.Client(base_url=url, auth=(user, password or ""), timeout=timeout_s)
        self.schema_ready = False

    def _query(self, sql: str, body: bytes = b"") -> None:
        resp = self.client.post("/", params={"query": sql}, content=body)
        resp.raise_for_status()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            if not self.schema_ready:
                self._query(DDL.format(db=self.database))
                self.schema_ready = True
            body = "\n".join(json.dumps(row(s)) for s in spans).encode()
            self._query(f"INSERT INTO {self.database}.{TABLE} FORMAT JSONEachRow", body)
            return SpanExportResult.SUCCESS
        except Exception as e:  # tracing never fails a request; the loss is logged (no URL, no password)
            log.warning("%d span(s) not exported: %s", len(spans), type(e).__name__)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.client.close()


class RequestRoots(Sampler):
    """A trace starts at a request the service serves (or continues the caller's): background
    loops (stream consumers, lease renewals, readiness probes) record nothing, which keeps their
    spans off the event loop and out of `otel_traces`, where they would be roots of nothing."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: SpanKind | None = None,
                      attributes: Any = None, links: Any = None, trace_state: Any = None) -> SamplingResult:
        if kind == SpanKind.SERVER:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "RequestRoots"


class WithoutTransactionControl(Sampler):
    """Every span of a sampled trace but the database's transaction control: BEGIN, COMMIT,
    ROLLBACK and the pool's `;` liveness ping were two spans in five stored (each request and each
    step of a run opens and ends transactions) and time nothing the statements between them do not;
    a slow commit still shows, as the time between the last statement and the parent's end."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: SpanKind | None = None,
                      attributes: Any = None, links: Any = None, trace_state: Any = None) -> SamplingResult:
        attrs = attributes or {}
        if kind == SpanKind.CLIENT and "postgresql" in (attrs.get("db.system"), attrs.get("db.system.name")) \
                and name.rstrip(";").upper() in TRANSACTION_CONTROL:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "WithoutTransactionControl"


TRANSACTION_CONTROL = ("", "BEGIN", "COMMIT", "ROLLBACK")


def sampler() -> Sampler:
    """What a service records: traces its requests start or continue, without transaction control."""
    return ParentBased(root=RequestRoots(), local_parent_sampled=WithoutTransactionControl())


def _exporter(settings: _ServiceSettings) -> SpanExporter | None:
    if settings.otel_exporter == "none" or not settings.otel_endpoint:
        return None
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=f"{settings.otel_endpoint.rstrip('/')}/v1/traces")
    return ClickHouseSpanExporter(settings.otel_endpoint, settings.otel_clickhouse_database,
                                  settings.otel_clickhouse_user, settings.secret("otel_clickhouse_password"))


def install(app: FastAPI, settings: _ServiceSettings, service: str, instance: str) -> TracerProvider | None:
    """Instrument this process and `app`; None when the settings export no spans."""
    exporter = _exporter(settings)
    if exporter is None:
        return None
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    resource = Resource.create({"service.name": service, "service.instance.id": instance,
                                "deployment.environment": settings.env})
    provider = TracerProvider(sampler=sampler(), resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=settings.otel_batch_delay_ms))
    trace.set_tracer_provider(provider)
    # Probes and scrapes would be most of the spans and none of the questions; a WebSocket would be
    # one span per frame for the connection's life (its events carry the run's trace id instead).
    # The ASGI receive/send spans, two or more per request, time nothing the server span does not
    # and were a tenth of all spans stored.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider,
                                       excluded_urls="health/live,health/ready,metrics,/ws$",
                                       exclude_spans=["receive", "send"])
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    return provider


def current_ids() -> dict[str, str]:
    """The current trace and span ids (hex), for a message that leaves the request (an event)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


tracer = trace.get_tracer("app")


@contextmanager
def message_span(name: str, traceparent: object) -> Iterator[None]:
    """A server span for a message that is not an HTTP request (a WebSocket message starting a
    run): it continues the message's W3C `traceparent`, or starts a trace when it has none (a
    malformed one is ignored, as the W3C spec says)."""
    carrier = {"traceparent": traceparent} if isinstance(traceparent, str) else {}
    with tracer.start_as_current_span(name, context=propagate.extract(carrier), kind=SpanKind.SERVER):
        yield
