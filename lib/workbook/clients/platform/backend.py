"""Client of the backend API: who-am-I, threads (the per-user resource), admin and service
endpoints, health and circuit breakers."""

from __future__ import annotations

from typing import Any

import httpx

from workbook.clients.platform.common import ApiClient, Check, User, expect
from workbook.env import Env


class AsyncBackend(ApiClient):
    def __init__(self, env: Env, service: str = "backend"):
        super().__init__(env, service)

    async def me_raw(self, access: str, **kwargs: Any) -> httpx.Response:
        return await self.get("/api/users/me", token=access, **kwargs)

    async def me(self, access: str) -> dict[str, Any]:
        return expect(await self.me_raw(access), 200, "GET /api/users/me").json()

    # -- threads --------------------------------------------------------------------------------

    async def create_thread_raw(self, access: str, title: str) -> httpx.Response:
        return await self.post("/api/threads", token=access, json={"title": title})

    async def create_thread(self, access: str, title: str) -> dict[str, Any]:
        return expect(await self.create_thread_raw(access, title), 201, "create thread").json()

    async def new_thread(self, ck: Check, user: User, title: str = "workbook thread") -> dict[str, Any]:
        """A thread of `user`, deleted with the check (through the API, as its owner)."""
        thread = await self.create_thread(user.access, f"{ck.ns[:150]} {title}")
        ck.defer(self.delete_thread_raw, user.access, thread["id"])
        return thread

    async def thread_raw(self, access: str, thread_id: str) -> httpx.Response:
        return await self.get(f"/api/threads/{thread_id}", token=access)

    async def threads_raw(self, access: str, **params: Any) -> httpx.Response:
        return await self.get("/api/threads", token=access, params=params)

    async def threads(self, access: str, **params: Any) -> dict[str, Any]:
        return expect(await self.threads_raw(access, **params), 200, "list threads").json()

    async def rename_thread_raw(self, access: str, thread_id: str, title: str) -> httpx.Response:
        return await self.patch(f"/api/threads/{thread_id}", token=access, json={"title": title})

    async def delete_thread_raw(self, access: str, thread_id: str) -> httpx.Response:
        return await self.delete(f"/api/threads/{thread_id}", token=access)

    # -- admin and service-to-service -----------------------------------------------------------

    async def admin_user_threads_raw(self, access: str, user_id: str) -> httpx.Response:
        return await self.get(f"/api/admin/users/{user_id}/threads", token=access)

    async def internal_user_threads_raw(self, service_token: str, user_id: str) -> httpx.Response:
        return await self.get(f"/internal/users/{user_id}/threads", token=service_token)

    # -- operations -----------------------------------------------------------------------------

    async def ready_raw(self) -> httpx.Response:
        return await self.get("/health/ready")

    async def breakers(self) -> dict[str, Any]:
        return expect(await self.get("/api/metrics/circuit_breakers"), 200, "circuit breakers").json()["breakers"]


def backend(env: Env, service: str = "backend") -> AsyncBackend:
    """The backend API client for `env` (close it with `await client.aclose()` or `async with`)."""
    return AsyncBackend(env, service)
