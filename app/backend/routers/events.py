"""Ingestion of a user's workload events: `POST /api/events/batch`.

The body is a JSON array of events or JSON lines. Each row is validated on its own: the good rows
land (in one INSERT), the bad ones are listed by index with the reason; an event id the user has
already stored, or one seen earlier in the same batch, is a duplicate and is not written again.
More rows than `events_batch_max_rows` (or a body over `events_batch_max_bytes`) is 413.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app.backend import workload
from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.tokens import Principal
from app.common.errors import ApiError

BATCH_PATH = "/api/events/batch"

router = APIRouter(tags=["events"])


@router.post(BATCH_PATH)
async def ingest(request: Request, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> JSONResponse:
    try:
        parsed = workload.parse_batch(await request.body())
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_batch", f"the body is neither a JSON array nor JSON lines: {e}") from None
    if not isinstance(parsed.rows, list):
        raise ApiError(400, "invalid_batch", "the body is neither a JSON array nor JSON lines")
    limit = c.settings.events_batch_max_rows
    if len(parsed.rows) > limit:
        raise ApiError(413, "batch_too_large", f"{len(parsed.rows)} events in one batch; at most {limit}",
                       max_rows=limit)
    now = datetime.now(UTC)
    good, errors = workload.validate(parsed, c.settings.workload_retention_days, now)
    duplicates: list[int] = []
    fresh: dict[str, tuple[int, workload.EventIn]] = {}
    for index, event in good:
        if event.event_id in fresh:
            duplicates.append(index)
        else:
            fresh[event.event_id] = (index, event)
    if fresh:
        try:
            stored = await workload.known_event_ids(c.clickhouse, who.sub, list(fresh))
        except Exception as e:  # ingestion failing at its first step is a failing insert too
            c.clickhouse.inserts.failure(e)
            raise
        duplicates += [fresh.pop(event_id)[0] for event_id in sorted(stored)]
    written = await workload.insert_events(c.clickhouse, who.sub, [e for _, e in fresh.values()], now)
    body: dict[str, Any] = {"received": len(parsed.rows), "accepted": written, "duplicates": sorted(duplicates),
                            "rejected": [{"index": i, "errors": errors[i]} for i in sorted(errors)]}
    if errors and not good:
        return JSONResponse({"error": "validation_error", "detail": "no valid event in the batch", **body}, 422)
    return JSONResponse(body, 200)
