"""corpus_admin (the user's content corpus in ClickHouse) and supply_researcher (model prices
in the supply catalog). Each runs on its own: the model picks one tool from the request, the
tool runs, the model reports what happened."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from app.agents.scope import RunScope
from app.agents.tools import Tool, ToolFailure
from app.agents.workers.prompts import tool_round

PRICE_EDITORS = ("admin", "owner")
CORPUS_COLUMNS = ["entry_id", "owner_id", "title", "content", "tags", "created_at"]


async def _create_entry(scope: RunScope, args: dict[str, Any]) -> dict[str, Any]:
    entry = str(uuid.uuid4())
    await scope.services.clickhouse.insert(
        "corpus", [[entry, scope.ctx.user_id, args["title"], args["content"], args.get("tags", []),
                    datetime.now(timezone.utc)]],
        ["entry_id", "owner_id", "title", "content", "tags", "created_at"])
    return {"entry_id": entry, "title": args["title"], "tags": args.get("tags", [])}


async def _uncreate(scope: RunScope, args: dict[str, Any], created: dict[str, Any]) -> None:
    await scope.services.clickhouse.command(
        "DELETE FROM corpus WHERE owner_id = {owner:String} AND entry_id = {id:String}",
        {"owner": scope.ctx.user_id, "id": created["entry_id"]})


async def _search(scope: RunScope, args: dict[str, Any]) -> dict[str, Any]:
    rows = await scope.services.clickhouse.query(
        "SELECT entry_id, title, tags FROM corpus WHERE owner_id = {owner:String} "
        "AND (positionCaseInsensitive(title, {q:String}) > 0 OR positionCaseInsensitive(content, {q:String}) > 0) "
        "ORDER BY created_at DESC, entry_id LIMIT {n:UInt32}",
        {"owner": scope.ctx.user_id, "q": args["query"], "n": args.get("limit", 10)})
    return {"query": args["query"], "matches": [{**r, "tags": list(r["tags"])} for r in rows]}


async def _delete_entry(scope: RunScope, args: dict[str, Any]) -> dict[str, Any]:
    ch, params = scope.services.clickhouse, {"owner": scope.ctx.user_id, "id": args["entry_id"]}
    where = "owner_id = {owner:String} AND entry_id = {id:String}"
    found = await ch.query(f"SELECT {', '.join(CORPUS_COLUMNS)} FROM corpus WHERE {where}", params)
    if not found:
        raise ToolFailure("not_found", f"no corpus entry {args['entry_id']} of this user")
    await ch.command(f"DELETE FROM corpus WHERE {where}", params)
    rows = [{**r, "tags": list(r["tags"]), "created_at": r["created_at"].isoformat()} for r in found]
    return {"entry_id": args["entry_id"], "deleted": True, "rows": rows}


async def _undelete(scope: RunScope, args: dict[str, Any], deleted: dict[str, Any]) -> None:
    rows = [{**r, "created_at": datetime.fromisoformat(r["created_at"])} for r in deleted["rows"]]
    await scope.services.clickhouse.insert("corpus", [[r[c] for c in CORPUS_COLUMNS] for r in rows], CORPUS_COLUMNS)


CORPUS_TOOLS = [
    Tool("create_corpus_entry", "Add an entry to the user's content corpus.",
         {"type": "object", "additionalProperties": False, "required": ["title", "content"],
          "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 200},
                         "content": {"type": "string", "minLength": 1, "maxLength": 10000},
                         "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 10}}},
         _create_entry, undo=_uncreate),
    Tool("search_corpus", "Find the user's corpus entries whose title or content contains the query.",
         {"type": "object", "additionalProperties": False, "required": ["query"],
          "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 200},
                         "limit": {"type": "integer", "minimum": 1, "maximum": 50}}},
         _search),
    Tool("delete_corpus_entry", "Delete one of the user's corpus entries by id.",
         {"type": "object", "additionalProperties": False, "required": ["entry_id"],
          "properties": {"entry_id": {"type": "string", "pattern": "^[0-9a-f-]{36}$"}}},
         _delete_entry, undo=_undelete),
]


async def _get_price(scope: RunScope, args: dict[str, Any]) -> dict[str, Any]:
    price, cached = await scope.services.catalog.get(args["model"])
    if price is None:
        raise ToolFailure("not_found", f"no model {args['model']!r} in the supply catalog")
    return {"price": price.public(), "cached": cached}


async def _update_price(scope: RunScope, args: dict[str, Any]) -> dict[str, Any]:
    if scope.ctx.role not in PRICE_EDITORS:
        raise ToolFailure("forbidden", f"changing prices needs role {' or '.join(PRICE_EDITORS)}, "
                                       f"not {scope.ctx.role}")
    price, change = await scope.services.catalog.set_price(
        args["model"], Decimal(str(args["input_usd_per_mtok"])), Decimal(str(args["output_usd_per_mtok"])),
        args["source"], by=f"supply_researcher:{scope.ctx.user_id}", provider=args.get("provider"),
        tier=args.get("tier"))
    return {"price": price.public(), **change}


SUPPLY_TOOLS = [
    Tool("get_model_price", "A model's current price (USD per million tokens).",
         {"type": "object", "additionalProperties": False, "required": ["model"],
          "properties": {"model": {"type": "string", "minLength": 1, "maxLength": 100}}},
         _get_price),
    Tool("update_model_price", "Record a model's new price (creates the model if it is new).",
         {"type": "object", "additionalProperties": False,
          "required": ["model", "input_usd_per_mtok", "output_usd_per_mtok", "source"],
          "properties": {"model": {"type": "string", "minLength": 1, "maxLength": 100},
                         "input_usd_per_mtok": {"type": "number", "minimum": 0, "maximum": 10000},
                         "output_usd_per_mtok": {"type": "number", "minimum": 0, "maximum": 10000},
                         "source": {"type": "string", "minLength": 1, "maxLength": 500},
                         "provider": {"type": "string", "minLength": 1, "maxLength": 100},
                         "tier": {"type": "integer", "minimum": 0, "maximum": 5}}},
         _update_price),
]


async def _tool_agent(scope: RunScope, agent: str, instructions: str, tools: list[Tool[RunScope]],
                      task: str) -> dict[str, Any]:
    call, result, summary = await tool_round(scope, agent, instructions, task, tools)
    return {"tool": call.name, "result": result, "summary": summary}


async def corpus_admin(scope: RunScope, inp: dict[str, Any]) -> dict[str, Any]:
    return await _tool_agent(scope, "corpus_admin", "Manage the user's content corpus with the tools.",
                             CORPUS_TOOLS, inp["task"])


async def supply_researcher(scope: RunScope, inp: dict[str, Any]) -> dict[str, Any]:
    return await _tool_agent(scope, "supply_researcher", "Research and record model prices with the tools.",
                             SUPPLY_TOOLS, inp["task"])
