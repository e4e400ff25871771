"""A user's own model provider connections: add, list, test, rotate the key, delete.

No answer carries the API key (not even part of it). An unverified account cannot add one
(`email_unverified`). A key the provider refuses shows at test time (422
`provider_key_rejected`), not as a failed run later: only a tested connection is used.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field, HttpUrl

from app.backend.context import Context
from app.backend.deps import ctx, require_permission
from app.backend.routers.billing import require_verified
from app.backend.tokens import Principal
from app.common.errors import ApiError
from app.common.text import StorableStr

router = APIRouter(prefix="/api/providers", tags=["providers"])


class ConnectionBody(BaseModel):
    name: StorableStr = Field(min_length=1, max_length=100)
    base_url: HttpUrl
    api_key: str = Field(min_length=1, max_length=500, repr=False)


class KeyBody(BaseModel):
    api_key: str = Field(min_length=1, max_length=500, repr=False)


def _found(item: dict[str, Any] | None) -> dict[str, Any]:
    if item is None:
        raise ApiError(404, "not_found", "no such provider connection")
    return item


@router.post("", status_code=201)
async def add(body: ConnectionBody, who: Principal = Depends(require_permission("threads:write")),
              c: Context = Depends(ctx)) -> dict[str, Any]:
    require_verified(who)
    if not c.providers.ring.ready:
        raise ApiError(503, "providers_disabled", "no encryption key is configured for provider keys")
    return await c.providers.add(who.sub, body.name, str(body.base_url), body.api_key)


@router.get("")
async def list_(who: Principal = Depends(require_permission("threads:read")),
                c: Context = Depends(ctx)) -> dict[str, Any]:
    return {"connections": await c.providers.list(who.sub)}


@router.get("/{cid}")
async def get(cid: uuid.UUID, who: Principal = Depends(require_permission("threads:read")),
              c: Context = Depends(ctx)) -> dict[str, Any]:
    return _found(await c.providers.get(who.sub, cid))


@router.post("/{cid}/test")
async def test(cid: uuid.UUID, who: Principal = Depends(require_permission("threads:write")),
               c: Context = Depends(ctx)) -> dict[str, Any]:
    result = _found(await c.providers.test(who.sub, cid))
    if not result["ok"]:
        raise ApiError(422, "provider_key_rejected" if result["provider_status"] in (401, 403) else "provider_unusable",
                       f"connection test failed: {result['error']}", provider_status=result["provider_status"])
    return result


@router.put("/{cid}/key")
async def rotate(cid: uuid.UUID, body: KeyBody, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> dict[str, Any]:
    return _found(await c.providers.rotate(who.sub, cid, body.api_key))


@router.delete("/{cid}", status_code=204)
async def remove(cid: uuid.UUID, who: Principal = Depends(require_permission("threads:write")),
                 c: Context = Depends(ctx)) -> Response:
    if not await c.providers.remove(who.sub, cid):
        raise ApiError(404, "not_found", "no such provider connection")
    return Response(status_code=204)
