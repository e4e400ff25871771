"""Workload events in ClickHouse: ingestion (validated rows, one INSERT per batch, idempotent per
event id) and the per-user analytics read back from them. The only SQL of either.

Every query names the user from the caller's token and binds every value as a query parameter;
analytics read `FINAL`, so an event retried before a merge still counts once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.common.clickhouse import ClickHouse
from app.common.clickhouse_schema import WORKLOAD_COLUMNS, WORKLOAD_TYPES
from app.common.text import StorableStr

# How far ahead of the server's clock an event may be stamped (clients' clocks drift).
FUTURE_SKEW = timedelta(days=1)


class EventIn(BaseModel):
    """One workload event as a client sends it; the user is the caller, never a field."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    ts: AwareDatetime  # a timestamp without an offset is ambiguous: refused, not guessed
    workload: StorableStr = Field(min_length=1, max_length=64)
    model: StorableStr = Field(min_length=1, max_length=100)
    requests: int = Field(1, ge=1, le=1_000_000)
    prompt_tokens: int = Field(ge=0, le=10**12)
    completion_tokens: int = Field(ge=0, le=10**12)
    latency_ms: float = Field(ge=0, le=86_400_000)
    cost_usd: Decimal = Field(ge=0, max_digits=18, decimal_places=9)
    status: Literal["ok", "error"] = "ok"

    @field_validator("latency_ms")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


@dataclass
class Parsed:
    rows: list[tuple[int, Any]]  # (index in the batch, the decoded row or the JSON error)
    errors: dict[int, list[dict[str, str]]] = field(default_factory=dict)


def parse_batch(body: bytes) -> Parsed:
    """A JSON array of events, or JSON lines (one event per non-empty line). A line that is not
    JSON is that row's error; a body that is neither is one ValueError."""
    text = body.decode("utf-8")
    if text.lstrip().startswith("["):
        data = json.loads(text)
        return Parsed(list(enumerate(data)))
    parsed = Parsed([])
    for index, line in enumerate(line for line in text.splitlines() if line.strip()):
        try:
            parsed.rows.append((index, json.loads(line)))
        except ValueError as e:
            parsed.rows.append((index, None))
            parsed.errors[index] = [{"field": "row", "message": f"not JSON: {e}"}]
    return parsed


def validate(parsed: Parsed, retention_days: int, now: datetime) -> tuple[list[tuple[int, EventIn]],
                                                                          dict[int, list[dict[str, str]]]]:
    good: list[tuple[int, EventIn]] = []
    errors = dict(parsed.errors)
    oldest, newest = now - timedelta(days=retention_days), now + FUTURE_SKEW
    for index, raw in parsed.rows:
        if index in errors:
            continue
        if not isinstance(raw, dict):
            errors[index] = [{"field": "row", "message": "an event is a JSON object"}]
            continue
        try:
            event = EventIn.model_validate(raw)
        except ValidationError as e:
            errors[index] = [{"field": ".".join(str(p) for p in err["loc"]) or "row", "message": err["msg"]}
                             for err in e.errors()]
            continue
        if not oldest <= event.ts <= newest:
            errors[index] = [{"field": "ts", "message": f"outside the accepted window: older than the retention of "
                                                         f"{retention_days} days, or more than a day ahead"}]
            continue
        good.append((index, event))
    return good, errors


async def known_event_ids(ch: ClickHouse, user_id: str, event_ids: list[str]) -> set[str]:
    rows = await ch.query("SELECT DISTINCT event_id FROM workload_events WHERE user_id = {user:String} "
                          "AND event_id IN {ids:Array(String)}", {"user": user_id, "ids": event_ids})
    return {r["event_id"] for r in rows}


async def insert_events(ch: ClickHouse, user_id: str, events: list[EventIn], now: datetime) -> int:
    """All of them in one INSERT: one part on the server, visible to readers all at once."""
    rows = [[user_id, e.ts.astimezone(UTC), e.workload, e.model, e.requests, e.prompt_tokens, e.completion_tokens,
             e.latency_ms, e.event_id, e.cost_usd, e.status, now] for e in events]
    return await ch.insert("workload_events", rows, WORKLOAD_COLUMNS, WORKLOAD_TYPES,
                           settings={"insert_allow_materialized_columns": 1})


# -- analytics ---------------------------------------------------------------------------------

WINDOW = ("user_id = {user:String} AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')} "
          "AND ({model:String} = '' OR model = {model:String})")


def window(user_id: str, start: datetime, end: datetime, model: str) -> dict[str, Any]:
    return {"user": user_id, "start": start.astimezone(UTC).replace(tzinfo=None),
            "end": end.astimezone(UTC).replace(tzinfo=None), "model": model}


async def usage(ch: ClickHouse, user_id: str, start: datetime, end: datetime, model: str,
                granularity: Literal["day", "week"], tz: str) -> list[dict[str, Any]]:
    """Events, requests, tokens and cost per model per day (or ISO week, from Monday) in `tz`."""
    rows = await ch.query(
        "SELECT if({week:UInt8} = 1, toMonday(ts, {tz:String}), toDate(ts, {tz:String})) AS period, model, "
        "count() AS events, sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens, "
        "sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd "
        f"FROM workload_events FINAL WHERE {WINDOW} GROUP BY period, model ORDER BY period, model",
        {**window(user_id, start, end, model), "week": int(granularity == "week"), "tz": tz})
    return [{"period": r["period"].isoformat(), "model": r["model"], "events": int(r["events"]),
             "requests": int(r["requests"]), "prompt_tokens": int(r["prompt_tokens"]),
             "completion_tokens": int(r["completion_tokens"]), "cost_usd": str(r["cost_usd"])} for r in rows]


async def latency(ch: ClickHouse, user_id: str, start: datetime, end: datetime, model: str) -> list[dict[str, Any]]:
    """p50 and p95 latency (t-digest: ClickHouse documents a relative error of at most 1%) and
    the error rate, per model."""
    rows = await ch.query(
        "SELECT model, count() AS events, quantilesTDigest(0.5, 0.95)(latency_ms) AS q, "
        "countIf(status = 'error') AS errors "
        f"FROM workload_events FINAL WHERE {WINDOW} GROUP BY model ORDER BY model",
        window(user_id, start, end, model))
    return [{"model": r["model"], "events": int(r["events"]), "p50_ms": float(r["q"][0]), "p95_ms": float(r["q"][1]),
             "errors": int(r["errors"]), "error_rate": int(r["errors"]) / int(r["events"])} for r in rows]
