"""Spans as the platform writes them into otel_traces: the Collector ClickHouse exporter's
columns, parent links and durations, from real SDK spans."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from app.common import tracing

COLLECTOR_COLUMNS = {"Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind",
                     "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration",
                     "StatusCode", "StatusMessage", "Events.Timestamp", "Events.Name", "Events.Attributes",
                     "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes"}


def test_rows_have_the_collector_schema_and_links() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "backend"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /api/threads/{thread_id}/runs", kind=SpanKind.SERVER) as parent:
        with tracer.start_as_current_span("tool query_workload", attributes={"tool.name": "query_workload", "n": 3}) as child:
            child.add_event("retry", {"attempt": 1})
            child.set_status(Status(StatusCode.ERROR, "boom"))
    rows = {r["SpanName"]: r for r in map(tracing.row, memory.get_finished_spans())}
    server, tool = rows["POST /api/threads/{thread_id}/runs"], rows["tool query_workload"]
    assert set(server) == COLLECTOR_COLUMNS
    assert tool["TraceId"] == server["TraceId"] == f"{parent.get_span_context().trace_id:032x}"
    assert tool["ParentSpanId"] == server["SpanId"] and server["ParentSpanId"] == ""
    assert (server["SpanKind"], tool["SpanKind"], tool["StatusCode"], tool["StatusMessage"]) == ("Server", "Internal", "Error", "boom")
    assert tool["SpanAttributes"] == {"tool.name": "query_workload", "n": "3"} and server["ServiceName"] == "backend"
    assert tool["Events.Name"] == ["retry"] and 0 < tool["Duration"] <= server["Duration"]
    assert len(server["Timestamp"].split(".")[1]) == 9  # DateTime64(9)


def test_a_request_trace_keeps_its_statements_not_transaction_control() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.sampler(), resource=Resource.create({"service.name": "backend"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    postgres = {"db.system": "postgresql", "db.name": "backend"}
    with tracer.start_as_current_span("lease renewal"):          # a background loop: no trace at all
        with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes=postgres):
            pass
    with tracer.start_as_current_span("GET /api/threads", kind=SpanKind.SERVER):
        for statement in (";", "BEGIN;", "SELECT", "INSERT", "COMMIT;", "ROLLBACK;", "begin"):
            with tracer.start_as_current_span(statement, kind=SpanKind.CLIENT, attributes=postgres):
                pass
        with tracer.start_as_current_span("COMMIT;", kind=SpanKind.CLIENT, attributes={"db.system": "mysql"}):
            pass
        with tracer.start_as_current_span("EVALSHA", kind=SpanKind.CLIENT, attributes={"db.system": "redis"}):
            pass
    names = [s.name for s in memory.get_finished_spans()]
    assert sorted(names) == sorted(["GET /api/threads", "SELECT", "INSERT", "COMMIT;", "EVALSHA"]), names
