"""Triage: what the request is about and whether there is enough to act on.

`missing` names the facts the request lacks (the workload to look at, the time window);
sufficiency follows from it, and the supervisor picks the branch by it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from app.agents.scope import RunScope
from app.agents.workers.prompts import history, system, user, validated

Fact = Literal["workload", "timeframe"]
SUFFICIENCY = {0: "sufficient", 1: "partial", 2: "insufficient"}


class TriageResult(BaseModel):
    category: Literal["cost_optimization", "performance", "quality", "general"]
    sufficiency: Literal["sufficient", "partial", "insufficient"]
    missing: list[Fact] = Field(max_length=2)
    confidence: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> TriageResult:
        if len(set(self.missing)) != len(self.missing) or SUFFICIENCY[len(self.missing)] != self.sufficiency:
            raise ValueError("sufficiency must follow from the missing facts")
        return self


INSTRUCTIONS = ("Classify the user's request. Answer with JSON only: category (cost_optimization, performance, "
                "quality or general), sufficiency (sufficient, partial, insufficient), missing (of workload, "
                "timeframe), confidence (0 to 1).")


async def run(scope: RunScope, data: dict[str, Any]) -> dict[str, Any]:
    task = data["task"]
    past, info = await history(scope, exclude=data.get("message_id"))
    messages = [system("triage", INSTRUCTIONS), *past, user(task)]
    result = await validated(scope, "triage", messages, TriageResult, task, note=info)
    return result.model_dump()
