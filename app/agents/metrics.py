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

ALL = (runs_finished, llm_calls, agent_step_seconds)
