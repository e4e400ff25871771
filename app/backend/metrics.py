"""Prometheus metrics of this backend instance, served at `/metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.agents import metrics as agent_metrics
from app.common.http_metrics import LiveState, ServiceMetrics, StateCollector

registry = CollectorRegistry()

ws_connections = Gauge("backend_ws_connections", "Open WebSocket connections", registry=registry)
ws_connections_opened = Counter("backend_ws_connections_opened", "WebSocket connections accepted",
                                registry=registry)
ws_refused = Counter("backend_ws_refused", "WebSocket handshakes refused", ["reason"], registry=registry)
ws_received = Counter("backend_ws_messages_received", "Client messages received", ["type"], registry=registry)
ws_sent = Counter("backend_ws_messages_sent", "Server messages sent", ["type"], registry=registry)
ws_errors = Counter("backend_ws_errors", "Error messages sent to clients", ["code"], registry=registry)
ws_message_bytes = Histogram("backend_ws_message_bytes", "Size of client messages", registry=registry,
                             buckets=(64, 256, 1024, 4096, 16384, 65536, 262144))
ws_delivery_seconds = Histogram("backend_ws_delivery_seconds", "From event creation to its send on a socket",
                                registry=registry,
                                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
events_published = Counter("backend_events_published", "Thread events published", ["type", "route"],
                           registry=registry)
leader_fenced = Counter("backend_leader_fenced", "Leader jobs refused because a newer leader's token wrote since",
                        registry=registry)
redis_pool = Gauge("backend_redis_pool_connections", "This instance's Redis pool: open, in use, max",
                   ["state"], registry=registry)
# The agents define their own metrics; this instance serves them with its own.
for collector in agent_metrics.ALL:
    registry.register(collector)

# The PostgreSQL pool, read when scraped (Context.build points them at its engine).
db_pool = {name: Gauge(f"backend_db_pool_{name}", text, registry=registry) for name, text in (
    ("size", "Connections the pool keeps"), ("checked_out", "Connections in use by a request or task"),
    ("overflow", "Connections open beyond the pool size"), ("waiting", "Checkouts waiting for a connection"),
    ("timeouts", "Checkouts that gave up waiting (answered 503) since the start"))}

# Requests, dependency probes (and, registered by the app, breaker states and pools): every service's set.
service = ServiceMetrics(registry)
state = LiveState()
registry.register(StateCollector(state.breakers, state.pools))
