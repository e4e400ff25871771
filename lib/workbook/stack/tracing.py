"""Where the embedded stack's platform services send their spans: the stack's ClickHouse, into
`otel_traces` (the OpenTelemetry Collector ClickHouse-exporter schema), as the Collector does in
docker and staging. Read from the stack's state rather than declared as a dependency, so a
ClickHouse fault does not hold auth back: a service whose span store is away only loses spans."""

from __future__ import annotations

from workbook.stack.state import Paths, StackState, stack_secret

# Spans are in ClickHouse within about this long of their end, so a check reads them soon. Not
# shorter: each export is an INSERT, a part the engine then merges into the day's, again and
# again; at 200 ms the merges read 3.9 M span rows for 74 k written in three notebooks' run.
BATCH_DELAY_MS = 500


def tracing_env(paths: Paths, prefix: str) -> dict[str, str]:
    clickhouse = StackState.read(paths).services.get("clickhouse")
    if clickhouse is None:
        return {}
    return {f"{prefix}OTEL_EXPORTER": "clickhouse", f"{prefix}OTEL_ENDPOINT": clickhouse.url,
            f"{prefix}OTEL_CLICKHOUSE_USER": "default",
            f"{prefix}OTEL_CLICKHOUSE_PASSWORD": stack_secret(paths, "clickhouse"),
            f"{prefix}OTEL_BATCH_DELAY_MS": str(BATCH_DELAY_MS)}
