"""Client of the backend API: who-am-I, threads (the per-user resource), runs and agents, usage,
plans and the supply catalog, admin and service endpoints, health and circuit breakers."""

from __future__ import annotations

from typing import Any

import httpx

from workbook.checks import using
from workbook.clients.platform.common import ApiClient, User, expect
from workbook.clients.scope import Check
from workbook.clients.platform.ws import Socket, open_socket, refused_handshake
from workbook.params import Env
from workbook.polling import poll


# A run's status once it no longer moves by itself.
RUN_SETTLED = ("completed", "failed", "cancelled", "awaiting_input")


class AsyncBackend(ApiClient):
    def __init__(self, env: Env, service: str = "backend", url: str | None = None):
        super().__init__(env, service, url)

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

    async def create_thread_with_raw(self, access: str, **body: Any) -> httpx.Response:
        """POST /api/threads with any body (`title`, and `message`: the thread's first message)."""
        return await self.post("/api/threads", token=access, json=body)

    async def edit_thread_raw(self, access: str, thread_id: str, **body: Any) -> httpx.Response:
        """PATCH a thread with any body (`title`, and `version`: the version the edit applies to)."""
        return await self.patch(f"/api/threads/{thread_id}", token=access, json=body)

    # -- admin and service-to-service -----------------------------------------------------------

    async def admin_user_threads_raw(self, access: str, user_id: str) -> httpx.Response:
        return await self.get(f"/api/admin/users/{user_id}/threads", token=access)

    async def internal_user_threads_raw(self, service_token: str, user_id: str) -> httpx.Response:
        return await self.get(f"/internal/users/{user_id}/threads", token=service_token)

    # -- messages and runs ----------------------------------------------------------------------

    async def add_message_raw(self, access: str, thread_id: str, content: str) -> httpx.Response:
        return await self.post(f"/api/threads/{thread_id}/messages", token=access, json={"content": content})

    async def messages(self, access: str, thread_id: str, **params: Any) -> dict[str, Any]:
        resp = await self.get(f"/api/threads/{thread_id}/messages", token=access, params=params)
        return expect(resp, 200, "list messages").json()

    async def start_run_raw(self, access: str, thread_id: str, **body: Any) -> httpx.Response:
        return await self.post(f"/api/threads/{thread_id}/runs", token=access, json=body)

    async def start_run(self, access: str, thread_id: str, **body: Any) -> dict[str, Any]:
        """Start a run (scenario, steps, step_delay_ms, request_id, trace_id); 202 with the queued run."""
        return expect(await self.start_run_raw(access, thread_id, **body), 202, "start run").json()

    async def run_raw(self, access: str, run_id: str) -> httpx.Response:
        return await self.get(f"/api/runs/{run_id}", token=access)

    async def run(self, access: str, run_id: str) -> dict[str, Any]:
        return expect(await self.run_raw(access, run_id), 200, "run status").json()

    async def run_steps(self, access: str, run_id: str) -> list[dict[str, Any]]:
        return expect(await self.get(f"/api/runs/{run_id}/steps", token=access), 200, "run steps").json()["steps"]

    async def stop_run_raw(self, access: str, run_id: str) -> httpx.Response:
        return await self.post(f"/api/runs/{run_id}/stop", token=access)

    async def settled(self, access: str, run_id: str, timeout_s: float = 30.0,
                      until: tuple[str, ...] = RUN_SETTLED) -> dict[str, Any]:
        """The run once its status is one of `until` (by default: ended, or waiting for the user);
        past `timeout_s` a PollTimeout names the status it was still in."""
        return await poll(lambda: self.run(access, run_id), until=lambda run: run["status"] in until,
                          within_s=timeout_s, what=f"run {run_id} {' or '.join(until)}")

    async def agent_run(self, access: str, thread_id: str, timeout_s: float = 30.0, **body: Any) -> dict[str, Any]:
        """Start a run and return it settled (see `settled`)."""
        run = await self.start_run(access, thread_id, **body)
        return await self.settled(access, run["id"], timeout_s)

    async def answer_raw(self, access: str, run_id: str, answers: dict[str, Any]) -> httpx.Response:
        return await self.post(f"/api/runs/{run_id}/input", token=access, json={"answers": answers})

    # -- agents, usage, plans, supply catalog ---------------------------------------------------

    async def agents(self) -> dict[str, Any]:
        return expect(await self.get("/health/agents"), 200, "GET /health/agents").json()

    async def usage(self, access: str) -> dict[str, Any]:
        return expect(await self.get("/api/usage", token=access), 200, "GET /api/usage").json()

    async def plan(self, access: str) -> dict[str, Any]:
        return expect(await self.get("/api/users/me/plan", token=access), 200, "GET plan").json()

    async def set_plan_raw(self, admin_access: str, user_id: str, plan: str, version: int | None = None) -> httpx.Response:
        """An admin's plan change; with `version` (as GET plan read it) it applies only to that version."""
        body: dict[str, Any] = {"plan": plan} if version is None else {"plan": plan, "version": version}
        return await self.put(f"/api/admin/users/{user_id}/plan", token=admin_access, json=body)

    async def supply_models(self, access: str) -> list[dict[str, Any]]:
        return expect(await self.get("/api/supply/models", token=access), 200, "supply models").json()["models"]

    async def supply_model_raw(self, access: str, model: str) -> httpx.Response:
        return await self.get(f"/api/supply/models/{model}", token=access)

    async def supply_history(self, access: str, model: str) -> list[dict[str, Any]]:
        resp = await self.get(f"/api/supply/models/{model}/history", token=access)
        return expect(resp, 200, "supply history").json()["history"]

    async def set_price_raw(self, admin_access: str, model: str, **body: Any) -> httpx.Response:
        return await self.put(f"/api/admin/supply/models/{model}", token=admin_access, json=body)

    async def remove_model_raw(self, admin_access: str, model: str) -> httpx.Response:
        return await self.delete(f"/api/admin/supply/models/{model}", token=admin_access)

    async def broadcast_raw(self, admin_access: str, message: str) -> httpx.Response:
        return await self.post("/api/admin/broadcast", token=admin_access, json={"message": message})

    # -- workload events, analytics, corpus (ClickHouse) ------------------------------------------

    async def ingest_raw(self, access: str, events: list[Any] | None = None, *, content: bytes | None = None,
                         content_type: str = "application/json") -> httpx.Response:
        """POST /api/events/batch with `events` as a JSON array, or `content` as it is (JSON lines)."""
        if events is not None:
            return await self.post("/api/events/batch", token=access, json=events)
        return await self.post("/api/events/batch", token=access, content=content,
                               headers={"Content-Type": content_type})

    async def ingest(self, access: str, events: list[Any]) -> dict[str, Any]:
        """Ingest a batch every row of which is valid; the platform's answer (accepted, duplicates)."""
        return expect(await self.ingest_raw(access, events), 200, "POST /api/events/batch").json()

    async def analytics_raw(self, access: str, kind: str, **params: Any) -> httpx.Response:
        return await self.get(f"/api/analytics/{kind}", token=access, params=params)

    async def analytics(self, access: str, kind: str, **params: Any) -> dict[str, Any]:
        """`kind`: usage (per model per day/week) or latency (percentiles, error rate)."""
        return expect(await self.analytics_raw(access, kind, **params), 200, f"GET /api/analytics/{kind}").json()

    async def corpus_create(self, access: str, **entry: Any) -> dict[str, Any]:
        return expect(await self.post("/api/corpus", token=access, json=entry), 201, "POST /api/corpus").json()

    async def corpus_search(self, access: str, q: str = "", **params: Any) -> list[dict[str, Any]]:
        resp = await self.get("/api/corpus", token=access, params={"q": q, **params})
        return expect(resp, 200, "GET /api/corpus").json()["entries"]

    async def corpus_entry_raw(self, access: str, entry_id: str) -> httpx.Response:
        return await self.get(f"/api/corpus/{entry_id}", token=access)

    async def corpus_update_raw(self, access: str, entry_id: str, **changes: Any) -> httpx.Response:
        return await self.patch(f"/api/corpus/{entry_id}", token=access, json=changes)

    async def corpus_delete_raw(self, access: str, entry_id: str) -> httpx.Response:
        return await self.delete(f"/api/corpus/{entry_id}", token=access)

    # -- WebSocket gateway ----------------------------------------------------------------------

    async def socket(self, ck: Check | None, user: User | str, via: str = "header", **kwargs: Any) -> Socket:
        """An open socket for `user` (or a raw token) on this instance, closed with the check."""
        token = user if isinstance(user, str) else user.access
        await using(self.service)
        sock = await open_socket(self.url, self.env.timeouts.request_s, token, via, **kwargs)
        if ck is not None:
            ck.defer(sock.close)
        return sock

    async def subscribed_socket(self, ck: Check | None, user: User | str, thread_id: str) -> Socket:
        """An open socket that follows `thread_id` (its `subscribed` reply read), closed with the check."""
        sock = await self.socket(ck, user)
        await sock.send("subscribe_thread", thread_id=thread_id)
        await sock.until("subscribed")
        return sock

    async def socket_refused(self, token: str | None, via: str = "header",
                             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        await using(self.service)
        return await refused_handshake(self.url, self.env.timeouts.request_s, token, via, headers)

    async def metrics(self) -> str:
        return expect(await self.get("/metrics"), 200, "GET /metrics").text

    # -- operations -----------------------------------------------------------------------------

    async def ready_raw(self) -> httpx.Response:
        return await self.get("/health/ready")

    async def postgres_health(self) -> dict[str, Any]:
        """PostgreSQL as this instance's readiness reports it (status, latency, pool)."""
        return (await self.ready_raw()).json()["checks"]["postgres"]

    async def clickhouse_health(self) -> dict[str, Any]:
        """ClickHouse as this instance's readiness reports it (latency, parts, limits, inserts)."""
        return (await self.ready_raw()).json()["checks"]["clickhouse"]

    async def breakers(self) -> dict[str, Any]:
        return expect(await self.get("/api/metrics/circuit_breakers"), 200, "circuit breakers").json()["breakers"]

    # -- billing and provider connections ----------------------------------------------------------

    async def billing_config(self) -> dict[str, Any]:
        return expect(await self.get("/api/billing/config"), 200, "GET /api/billing/config").json()

    async def checkout_raw(self, access: str, plan: str) -> httpx.Response:
        return await self.post("/api/billing/checkout", json={"plan": plan}, token=access)

    async def webhook_raw(self, body: bytes, signature: str) -> httpx.Response:
        return await self.post("/api/billing/webhook", content=body,
                               headers={"Stripe-Signature": signature, "content-type": "application/json"})

    async def invoices(self, access: str) -> list[dict[str, Any]]:
        return expect(await self.get("/api/billing/invoices", token=access), 200, "invoices").json()["invoices"]

    async def downgrade_raw(self, access: str) -> httpx.Response:
        return await self.post("/api/billing/downgrade", token=access)

    async def add_provider_raw(self, access: str, name: str, base_url: str, api_key: str) -> httpx.Response:
        return await self.post("/api/providers", json={"name": name, "base_url": base_url, "api_key": api_key},
                               token=access)

    async def test_provider_raw(self, access: str, cid: str) -> httpx.Response:
        return await self.post(f"/api/providers/{cid}/test", token=access)

    async def rotate_provider_key_raw(self, access: str, cid: str, api_key: str) -> httpx.Response:
        return await self.put(f"/api/providers/{cid}/key", json={"api_key": api_key}, token=access)

    async def delete_provider_raw(self, access: str, cid: str) -> httpx.Response:
        return await self.delete(f"/api/providers/{cid}", token=access)

    async def providers(self, access: str) -> list[dict[str, Any]]:
        return expect(await self.get("/api/providers", token=access), 200, "providers").json()["connections"]

    # -- teams ------------------------------------------------------------------------------------

    async def create_team_raw(self, access: str, name: str) -> httpx.Response:
        return await self.post("/api/teams", json={"name": name}, token=access)

    async def team(self, access: str, team_id: str) -> dict[str, Any]:
        return expect(await self.get(f"/api/teams/{team_id}", token=access), 200, "GET team").json()

    async def invite_raw(self, access: str, team_id: str, email: str, role: str) -> httpx.Response:
        return await self.post(f"/api/teams/{team_id}/invites", json={"email": email, "role": role}, token=access)

    async def accept_invite_raw(self, access: str, token: str) -> httpx.Response:
        return await self.post("/api/teams/invites/accept", json={"token": token}, token=access)

    async def remove_member_raw(self, access: str, team_id: str, user_id: str) -> httpx.Response:
        return await self.delete(f"/api/teams/{team_id}/members/{user_id}", token=access)

    async def create_team_thread_raw(self, access: str, team_id: str, title: str) -> httpx.Response:
        return await self.post(f"/api/teams/{team_id}/threads", json={"title": title}, token=access)

    async def team_messages_raw(self, access: str, team_id: str, thread_id: str) -> httpx.Response:
        return await self.get(f"/api/teams/{team_id}/threads/{thread_id}/messages", token=access)

    async def team_run_raw(self, access: str, team_id: str, thread_id: str, text: str) -> httpx.Response:
        return await self.post(f"/api/teams/{team_id}/threads/{thread_id}/runs", json={"input": text}, token=access)


def backend(env: Env, service: str = "backend", url: str | None = None) -> AsyncBackend:
    """The backend API client for `env` (close it with `await client.aclose()` or `async with`);
    `service` picks the instance (`backend`, `backend2`), `url` another process of it."""
    return AsyncBackend(env, service, url)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`, as PromQL's `sum(name{labels})`
    (0 when none: counters start there). Labels left out are summed over, not picked from: a
    counter split by agent counts every agent's runs when `agent` is not given."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum((float(sample.value) for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())), 0.0)
