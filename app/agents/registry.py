"""Every agent the platform runs, with what it is for and the tools it may call.

Entry agents can be started as a run (`agent` of `POST /api/threads/{id}/runs`); the others
run only when the supervisor hands off to them. Test agents (the scripted `probe`) exist only
in a process built with them (`BACKEND_TEST_AGENTS`): elsewhere their names are unknown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.agents.scope import AgentRun, RunScope
from app.agents.tools import Tool
from app.agents.workers import admin, analysis, probe, reporting, supervisor, triage


@dataclass(frozen=True)
class Agent:
    name: str
    description: str
    run: AgentRun
    tools: tuple[Tool[RunScope], ...] = ()
    entry: bool = False
    uses_model: bool = True
    own_steps: bool = False  # emits its own start and end steps (the scripted probe)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "entry": self.entry,
                "uses_model": self.uses_model,
                "tools": [{"name": t.name, "description": t.description, "parameters": t.parameters}
                          for t in self.tools]}


AGENTS = (
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
)
# Test-only: it reports a scripted result without doing any work, so only a process that asks
# for test agents lists it.
TEST_AGENTS = (
    Agent("probe", "A scripted run without a model, for checking the event gateway.", probe.run, entry=True,
          uses_model=False, own_steps=True),
)


class Registry:
    """The agents one process runs, in the order they are listed."""

    def __init__(self, agents: Iterable[Agent]):
        self._by_name = {a.name: a for a in agents}

    def __getitem__(self, name: str) -> Agent:
        return self._by_name[name]

    def listed(self) -> list[Agent]:
        return list(self._by_name.values())

    @property
    def entry(self) -> tuple[str, ...]:
        return tuple(a.name for a in self._by_name.values() if a.entry)

    def cannot_start(self, name: str) -> str | None:
        """Why `name` cannot start a run, or None if it can."""
        if name in self.entry:
            return None
        what = "runs only when the supervisor hands off to it" if name in self._by_name else "is not an agent"
        return f"'{name[:64]}' {what}; agents that start a run: {', '.join(self.entry)}"

    def runs(self) -> dict[str, AgentRun]:
        """What a run's scope hands off to, by name."""
        return {name: a.run for name, a in self._by_name.items()}


def registry(test_agents: bool) -> Registry:
    return Registry([*AGENTS, *(TEST_AGENTS if test_agents else ())])
