"""Data, optimization and actions: from the user's workload events to priced recommendations.

Savings rule (a check recomputes it from the same rows and prices): for each model the user
ran, its cost is its prompt and completion tokens at the catalog price; the alternative is the
catalog model of at least the same tier that would have cost least for those same tokens (ties
by name); a model is recommended to switch when its alternative is cheaper. Savings are the
sum of the differences, exact decimals.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from app.agents.catalog import Price, money
from app.agents.scope import RunScope
from app.agents.tools import Tool
from app.agents.workers.prompts import facts, system, tool_round, user

DEFAULT_DAYS = 30
_DAYS = re.compile(r"(\d+)\s*days?", re.I)


async def _query_workload(scope: RunScope, args: dict[str, Any]) -> dict[str, Any]:
    key = args.get("group_by", "model")
    rows = await scope.services.clickhouse.query(
        f"SELECT {key} AS key, sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens, "
        "sum(completion_tokens) AS completion_tokens FROM workload_events FINAL "
        "WHERE user_id = {user:String} AND ts >= now() - toIntervalDay({days:UInt32}) "
        "GROUP BY key ORDER BY key",
        {"user": scope.ctx.user_id, "days": args["days"]})  # the user comes from the context, never the model
    return {"group_by": key, "days": args["days"],
            "rows": [{key: r["key"], "requests": int(r["requests"]), "prompt_tokens": int(r["prompt_tokens"]),
                      "completion_tokens": int(r["completion_tokens"])} for r in rows]}


async def _model_prices(scope: RunScope, args: dict[str, Any]) -> dict[str, Any]:
    catalog = await scope.services.catalog.all()
    known = {p.model for p in catalog}
    return {"catalog": [p.public() for p in catalog], "unknown": [m for m in args["models"] if m not in known]}


QUERY_WORKLOAD = Tool(
    "query_workload_events", "Totals of the user's workload events over the last `days` days.",
    {"type": "object", "additionalProperties": False, "required": ["days"],
     "properties": {"days": {"type": "integer", "minimum": 1, "maximum": 90},
                    "group_by": {"type": "string", "enum": ["model", "workload"], "default": "model"}}},
    _query_workload)
MODEL_PRICES = Tool(
    "get_model_prices", "The supply catalog's prices (USD per million tokens) and tiers.",
    {"type": "object", "additionalProperties": False, "required": ["models"],
     "properties": {"models": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                               "maxItems": 50}}},
    _model_prices)


def days_asked(*texts: str) -> int:
    for text in texts:
        if m := _DAYS.search(text or ""):
            return max(1, min(90, int(m.group(1))))
    return DEFAULT_DAYS


async def data(scope: RunScope, inp: dict[str, Any]) -> dict[str, Any]:
    answers = inp.get("answers") or {}
    days = days_asked(answers.get("timeframe", ""), inp["task"])
    _, result, summary = await tool_round(
        scope, "data", "Fetch the user's workload data with the tool.",
        f"Fetch the workload events.\n{facts(days=str(days), group_by='model')}", [QUERY_WORKLOAD])
    return {"days": days, "rows": result["rows"], "summary": summary}


def savings(rows: list[dict[str, Any]], catalog: list[Price]) -> dict[str, Any]:
    by_name = {p.model: p for p in catalog}
    recs, unpriced, current, saved = [], [], Decimal(0), Decimal(0)
    for row in rows:
        price = by_name.get(row["model"])
        if price is None:
            unpriced.append(row["model"])
            continue
        p, c = row["prompt_tokens"], row["completion_tokens"]
        now = price.cost(p, c)
        current += now
        best = min((q for q in catalog if q.tier >= price.tier), key=lambda q: (q.cost(p, c), q.model))
        if best.model != price.model and best.cost(p, c) < now:
            diff = now - best.cost(p, c)
            saved += diff
            recs.append({"model": price.model, "switch_to": best.model, "current_cost_usd": money(now),
                         "new_cost_usd": money(best.cost(p, c)), "savings_usd": money(diff)})
    pct = (saved / current * 100).quantize(Decimal("0.01")) if current else Decimal(0)
    return {"recommendations": recs, "current_cost_usd": money(current), "savings_usd": money(saved),
            "savings_pct": money(pct), "unpriced_models": unpriced}


async def optimization(scope: RunScope, inp: dict[str, Any]) -> dict[str, Any]:
    rows = inp["data"]["rows"]
    models = sorted({r["model"] for r in rows})
    if not models:
        return {**savings([], []), "note": "no workload events in the window: nothing to optimise"}
    _, result, note = await tool_round(
        scope, "optimization", "Look up the prices of the models in use with the tool.",
        f"Look up model prices.\n{facts(models=models)}", [MODEL_PRICES])
    catalog = [Price(**{**p, "input_usd_per_mtok": Decimal(p["input_usd_per_mtok"]),
                        "output_usd_per_mtok": Decimal(p["output_usd_per_mtok"])}) for p in result["catalog"]]
    return {**savings(rows, catalog), "note": note}


async def actions(scope: RunScope, inp: dict[str, Any]) -> dict[str, Any]:
    recs = inp["optimization"]["recommendations"]
    steps = [{"type": "switch_model", "from": r["model"], "to": r["switch_to"], "savings_usd": r["savings_usd"]}
             for r in recs]
    done = await scope.think("actions", [system("actions", "Write a short rollout plan for these changes."),
                                         user(f"Plan the rollout.\n{facts(changes=steps)}")])
    return {"actions": steps, "plan": done.content or ""}
