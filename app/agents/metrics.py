"""The agents' Prometheus metrics. They are created unregistered: the process that runs the
agents decides where they are served (the backend adds them to its `/metrics` registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

runs_finished = Counter("backend_runs_finished", "Agent runs that ended, by the agent that started them",
                        ["agent", "status"], registry=None)
llm_calls = Counter("backend_llm_calls", "Model calls by outcome (ok, fallback, llm_unavailable, llm_rejected)",
                    ["outcome"], registry=None)
agent_step_seconds = Histogram("backend_agent_step_seconds", "Duration of agents, model calls and tool calls",
                               ["agent", "kind"], registry=None,
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

price_loads = Counter("backend_price_cache_loads", "Prices read from PostgreSQL on a cache miss", registry=None)
llm_tokens = Counter("backend_llm_tokens", "Model tokens used by runs, as billed (kind: prompt, completion)",
                     ["model", "kind"], registry=None)
llm_cost = Counter("backend_llm_cost_usd", "Model cost of runs in US dollars, as billed", ["model"], registry=None)

runs_taken_over = Counter("backend_runs_taken_over", "Runs this instance stopped writing to because they had been "
                          "ended elsewhere (fenced off after its lease lapsed)", registry=None)
ALL = (runs_finished, llm_calls, agent_step_seconds, price_loads, llm_tokens, llm_cost, runs_taken_over)
