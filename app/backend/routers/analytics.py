"""The caller's workload analytics from ClickHouse: cost and tokens per model per day or week,
latency percentiles and error rate. Always the caller's own events (the user comes from the
token), every value a bound query parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import available_timezones

from fastapi import APIRouter, Depends, Query

from app.backend import workload
from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.tokens import Principal
from app.common.errors import ApiError

router = APIRouter(prefix="/api/analytics", tags=["analytics"])

DEFAULT_DAYS = 30
ZONES = frozenset(available_timezones())


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC) + workload.FUTURE_SKEW
    start = start or end - timedelta(days=DEFAULT_DAYS)
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ApiError(422, "validation_error", f"{name}: a timestamp needs an offset (e.g. Z)")
    if start >= end:
        raise ApiError(422, "validation_error", "start must be before end")
    return start, end


@router.get("/usage")
async def usage(granularity: Literal["day", "week"] = "day", start: datetime | None = None,
                end: datetime | None = None, model: str = Query("", max_length=100), tz: str = "UTC",
                who: Principal = Depends(require_permission("threads:read")),
                c: Context = Depends(ctx)) -> dict[str, Any]:
    if tz not in ZONES:
        raise ApiError(422, "validation_error", f"tz: unknown time zone {tz[:64]!r}")
    start, end = _window(start, end)
    rows = await workload.usage(c.clickhouse, who.sub, start, end, model, granularity, tz)
    return {"granularity": granularity, "tz": tz, "start": start.isoformat(), "end": end.isoformat(), "rows": rows}


@router.get("/latency")
async def latency(start: datetime | None = None, end: datetime | None = None, model: str = Query("", max_length=100),
                  who: Principal = Depends(require_permission("threads:read")),
                  c: Context = Depends(ctx)) -> dict[str, Any]:
    start, end = _window(start, end)
    rows = await workload.latency(c.clickhouse, who.sub, start, end, model)
    return {"start": start.isoformat(), "end": end.isoformat(), "rows": rows}
