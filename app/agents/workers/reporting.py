"""The data helper (asks for exactly the facts triage found missing) and reporting (the final
report, streamed)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, model_validator

from app.agents.scope import RunScope
from app.agents.workers.prompts import facts, system, user, validated


class Question(BaseModel):
    field: str = Field(min_length=1)
    question: str = Field(min_length=5, max_length=500)


class Questions(BaseModel):
    questions: list[Question] = Field(min_length=1)

    @model_validator(mode="after")
    def _exactly_the_missing(self, info: ValidationInfo) -> Questions:
        fields = [q.field for q in self.questions]
        if sorted(fields) != sorted((info.context or {}).get("missing", fields)):
            raise ValueError("exactly one question per missing fact")
        return self


async def data_helper(scope: RunScope, inp: dict[str, Any]) -> dict[str, Any]:
    missing: list[str] = inp["missing"]
    ask = f"The request lacks some facts.\n{facts(missing=', '.join(missing))}\nrequest: {inp['task']}"
    messages = [system("data_helper", "Ask the user one question per missing fact. JSON only: "
                                      "{questions: [{field, question}]}."), user(ask)]
    asked = await validated(scope, "data_helper", messages, Questions, ask, context={"missing": missing})
    questions = [q.model_dump() for q in asked.questions]  # type: ignore[attr-defined]
    if not inp.get("wait"):
        return {"questions": questions}
    answers = await scope.ask("data_helper", questions)
    return {"questions": questions, "answers": answers}


async def reporting(scope: RunScope, inp: dict[str, Any]) -> dict[str, Any]:
    triage = inp["triage"]
    shown = {"category": triage["category"], "sufficiency": triage["sufficiency"]}
    if "optimization" in inp:
        shown |= {"savings_usd": inp["optimization"]["savings_usd"],
                  "recommendations": len(inp["optimization"]["recommendations"])}
    if "data" in inp:
        shown |= {"days": inp["data"]["days"], "models": [r["model"] for r in inp["data"]["rows"]]}
    if "questions" in inp:
        shown |= {"open_questions": [q["question"] for q in inp["questions"]]}
    if "answers" in inp:
        shown |= {"answers": inp["answers"]}
    done = await scope.think("reporting", [system("reporting", "Write the final report for the user."),
                                           user(f"Write the final report.\n{facts(**shown)}")], stream=True)
    report = {"report": done.content or "", **shown}
    if "optimization" in inp:
        report["recommendations"] = inp["optimization"]["recommendations"]
    if "actions" in inp:
        report["actions"] = inp["actions"]["actions"]
    if "questions" in inp:
        report["questions"] = inp["questions"]
    return report
