"""The supervisor: triage first, then the branch its data sufficiency picks.

sufficient   -> data, optimization, actions, reporting
partial      -> data_helper (asks, waits for the answer), data, reporting
insufficient -> data_helper (asks), reporting

Each agent gets the previous agents' outputs under their names, so every handoff carries
exactly what the next agent works from (and is recorded in its `agent_started` step).
"""

from __future__ import annotations

from typing import Any

from app.agents.scope import RunScope

BRANCHES = {
    "sufficient": ["triage", "data", "optimization", "actions", "reporting"],
    "partial": ["triage", "data_helper", "data", "reporting"],
    "insufficient": ["triage", "data_helper", "reporting"],
}


async def run(scope: RunScope, inp: dict[str, Any]) -> dict[str, Any]:
    task = inp["task"]
    triage = await scope.hand_off("triage", {"task": task, "message_id": inp.get("message_id")}, "supervisor")
    branch = triage["sufficiency"]
    done: dict[str, Any] = {"triage": triage}
    previous = "triage"
    for agent in BRANCHES[branch][1:]:
        if agent == "data_helper":
            data = {"task": task, "missing": triage["missing"], "wait": branch == "partial"}
        elif agent == "data":
            data = {"task": task, "triage": triage, **({"answers": done["data_helper"]["answers"]}
                                                      if "data_helper" in done else {})}
        elif agent == "reporting":
            data = {k: v for k, v in done.items()}
            if "data_helper" in done:  # answered questions are facts now, not open questions
                helper = done["data_helper"]
                data |= {"answers": helper["answers"]} if "answers" in helper else {"questions": helper["questions"]}
        else:
            data = {previous: done[previous]}
        done[agent] = await scope.hand_off(agent, data, previous)
        previous = agent
    return {"branch": branch, "agents": BRANCHES[branch], **done["reporting"]}
