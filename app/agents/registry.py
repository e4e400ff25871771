"""Every agent the platform runs, with what it is for and the tools it may call.

Entry agents can be started as a run (`agent` of `POST /api/threads/{id}/runs`); the others
run only when the supervisor hands off to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.agents.tools import Tool
from app.agents.workers import admin, analysis, probe, reporting, supervisor, triage

if TYPE_CHECKING:
    from app.agents.scope import RunScope


@dataclass(frozen=True)
class Agent:
    name: str
    description: str
    run: Callable[[RunScope, dict[str, Any]], Awaitable[dict[str, Any]]]
    tools: tuple[Tool, ...] = ()
    entry: bool = False
    uses_model: bool = True
    own_steps: bool = False  # emits its own start and end steps (the scripted probe)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "entry": self.entry,
                "uses_model": self.uses_model,
                "tools": [{"name": t.name, "description": t.description, "parameters": t.parameters}
                          for t in self.tools]}


_ALL = [
    Agent("supervisor", "Runs triage, then the agents its data sufficiency calls for.", supervisor.run, entry=True,
          uses_model=False),
    Agent("triage", "Classifies the request and judges whether its data suffices.", triage.run),
    Agent("data", "Queries the user's workload events in ClickHouse.", analysis.data,
          (analysis.QUERY_WORKLOAD,)),
    Agent("optimization", "Prices the workload and recommends cheaper models of the same tier.",
          analysis.optimization, (analysis.MODEL_PRICES,)),
    Agent("actions", "Turns recommendations into concrete changes and a rollout plan.", analysis.actions),
    Agent("reporting", "Writes the final report (streamed).", reporting.reporting),
    Agent("data_helper", "Asks the user for exactly the facts the request lacks.", reporting.data_helper),
    Agent("corpus_admin", "Creates, searches and deletes the user's content corpus entries.", admin.corpus_admin,
          tuple(admin.CORPUS_TOOLS), entry=True),
    Agent("supply_researcher", "Reads and records model prices in the supply catalog.", admin.supply_researcher,
          tuple(admin.SUPPLY_TOOLS), entry=True),
    Agent("probe", "A scripted run without a model, for checking the event gateway.", probe.run, entry=True,
          uses_model=False, own_steps=True),
]
AGENTS: dict[str, Agent] = {a.name: a for a in _ALL}
ENTRY = tuple(a.name for a in _ALL if a.entry)
