"""The caller's content corpus (what the corpus_admin agent manages too): create, search, read,
update, delete. Another owner's entry answers 404, exactly like a missing one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from app.backend import corpus
from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.tokens import Principal
from app.common.errors import ApiError
from app.common.text import StorableStr

router = APIRouter(prefix="/api/corpus", tags=["corpus"])

Tag = StorableStr


class EntryBody(BaseModel):
    title: StorableStr = Field(min_length=1, max_length=200)
    content: StorableStr = Field(min_length=1, max_length=10_000)
    tags: list[Tag] = Field([], max_length=10)


class EntryChange(BaseModel):
    title: StorableStr | None = Field(None, min_length=1, max_length=200)
    content: StorableStr | None = Field(None, min_length=1, max_length=10_000)
    tags: list[Tag] | None = Field(None, max_length=10)


def _missing() -> ApiError:
    return ApiError(404, "not_found", "no such corpus entry")


@router.post("", status_code=201)
async def create(body: EntryBody, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    return await corpus.create(c.clickhouse, who.sub, body.title, body.content, body.tags)


@router.get("")
async def search(q: str = Query("", max_length=200), limit: int = Query(20, ge=1, le=100),
                 who: Principal = Depends(require_permission("threads:read")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    entries = (await corpus.search(c.clickhouse, who.sub, q, limit) if q
               else await corpus.listing(c.clickhouse, who.sub, limit))
    return {"query": q, "entries": entries}


@router.get("/{entry_id}")
async def read(entry_id: str, who: Principal = Depends(require_permission("threads:read")),
               c: Context = Depends(ctx)) -> dict[str, Any]:
    found = await corpus.get(c.clickhouse, who.sub, entry_id)
    if found is None:
        raise _missing()
    return found


@router.patch("/{entry_id}")
async def update(entry_id: str, body: EntryChange, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise ApiError(422, "validation_error", "nothing to change: give title, content or tags")
    if await corpus.get(c.clickhouse, who.sub, entry_id) is None:
        raise _missing()
    await corpus.update(c.clickhouse, who.sub, entry_id, changes)
    return await corpus.get(c.clickhouse, who.sub, entry_id) or {}


@router.delete("/{entry_id}", status_code=204)
async def delete(entry_id: str, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> Response:
    if await corpus.get(c.clickhouse, who.sub, entry_id) is None:
        raise _missing()
    await corpus.delete(c.clickhouse, who.sub, entry_id)
    return Response(status_code=204)
