"""The WebSocket gateway on two real backend instances sharing Redis: handshake refusals, the
per-user connection limit, `connection_established`, run events in order on both instances,
resume, answers to bad client messages, thread ownership, and the Redis keys of a connection.

Each test runs its coroutine under a deadline (`run`), so a gateway that stops answering fails
the test instead of hanging the session.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aredis
from auth_support import BACKEND_DEPENDENCIES, DEPENDENCIES, AuthStack, bearer, register_and_login
from websockets.exceptions import InvalidStatus

from workbook.clients.platform.ws import Socket, open_socket, refused_handshake
from workbook.polling import poll
from workbook.stack.auth import AuthService
from workbook.stack.backend import BackendService
from workbook.stack.manager import Stack
from workbook.stack.platform_config import expected
from workbook.stack.state import stack_secret

TIMEOUT_S = 10.0  # one message, one handshake
RUN_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed",
              "final_report"]


@pytest.fixture(scope="module")
def stack(auth_stack: AuthStack) -> Stack:
    """The session's auth stack plus both backend instances (stopped with the rest at session end)."""
    root = auth_stack.stack.paths.root
    base = [*DEPENDENCIES, AuthService(), *BACKEND_DEPENDENCIES]
    # backend before backend2: started in one wave, both run ensure_database("backend") at once
    # and one of them fails on the duplicate CREATE DATABASE (a stack bug, see the report).
    Stack(root=root, services=[*base, BackendService(1)]).up()
    stack = Stack(root=root, services=[*base, BackendService(1), BackendService(2)])
    stack.up()
    return stack


@pytest.fixture(scope="module")
def urls(stack: Stack) -> dict[str, str]:
    services = stack.state().services
    return {"b1": services["backend"].url, "b2": services["backend2"].url}


@pytest.fixture
def api(urls: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=urls["b1"], timeout=30) as c:
        yield c


def run(make: Callable[[], Awaitable[Any]], timeout_s: float = 30.0) -> Any:
    """Run one test's coroutine with a deadline."""

    async def bounded() -> Any:
        return await asyncio.wait_for(make(), timeout_s)

    return asyncio.run(bounded())


def new_thread(api: httpx.Client, user: dict, title: str = "gateway") -> str:
    r = api.post("/api/threads", json={"title": title}, headers=bearer(user["access_token"]))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def redis_client(stack: Stack) -> aredis.Redis:
    return aredis.Redis.from_url(stack.state().services["redis"].url, password=stack_secret(stack.paths, "redis"))


async def sock(url: str, user: dict, via: str = "header") -> Socket:
    return await open_socket(url, TIMEOUT_S, user["access_token"], via=via)


def events(messages: list[dict], run_id: str | None = None) -> list[tuple[str, int]]:
    """(type, event_id) of the thread events among `messages` (acks and errors carry no event id)."""
    return [(m["type"], m["event_id"]) for m in messages
            if m.get("event_id") is not None and (run_id is None or m["run_id"] == run_id)]


# -- handshake --------------------------------------------------------------------------------------


def test_handshake_without_or_with_a_bad_token_is_refused_401(client: httpx.Client, urls: dict[str, str]) -> None:
    user = register_and_login(client)
    head, body, sig = user["access_token"].split(".")
    tampered = f"{head}.{body}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    unsigned = jwt.encode(jwt.decode(user["access_token"], options={"verify_signature": False}), None,
                          algorithm="none")

    async def main() -> None:
        for url in urls.values():
            for token, via in ((None, "header"), ("not-a-jwt", "header"), (tampered, "header"),
                               (unsigned, "header"), (user["refresh_token"], "header"), (tampered, "subprotocol")):
                status, answer = await refused_handshake(url, TIMEOUT_S, token, via=via)
                assert (status, answer.get("error")) == (401, "invalid_token"), (url, via, token and token[:12],
                                                                                 status, answer)
            # A Basic header is no bearer token either.
            status, answer = await refused_handshake(url, TIMEOUT_S, None, headers={"Authorization": "Basic eDp5"})
            assert status == 401 and answer["error"] == "invalid_token", answer
        # The token itself is good: the same user gets in on both instances, either way of sending it.
        for url, via in ((urls["b1"], "header"), (urls["b2"], "subprotocol")):
            s = await sock(url, user, via)
            assert s.conn.subprotocol == ("jwt" if via == "subprotocol" else None)
            await s.close()

    run(main)


def test_logged_out_token_is_refused_401(client: httpx.Client, urls: dict[str, str]) -> None:
    user = register_and_login(client)
    assert client.post("/auth/logout", headers=bearer(user["access_token"])).status_code == 204

    async def main() -> None:
        for url in urls.values():
            status, answer = await refused_handshake(url, TIMEOUT_S, user["access_token"])
            assert status == 401 and answer["error"] == "invalid_token", answer

    run(main)


def test_connection_limit_counts_both_instances_and_refuses_429(client: httpx.Client,
                                                                urls: dict[str, str]) -> None:
    user = register_and_login(client)

    async def main() -> None:
        first = await sock(urls["b1"], user)
        limit = first.established["payload"]["limits"]["max_connections_per_user"]
        opened = [first]
        try:
            # Half on each instance, one at a time: the limit is the user's, over every instance.
            for i in range(1, limit):
                opened.append(await sock(urls["b2"] if i % 2 else urls["b1"], user))
            for url in urls.values():
                status, answer = await refused_handshake(url, TIMEOUT_S, user["access_token"])
                assert status == 429 and answer["error"] == "too_many_connections", answer
            # One closed makes room for exactly one more.
            await opened.pop().close()
            deadline = time.monotonic() + 5
            while True:
                try:
                    opened.append(await sock(urls["b1"], user))
                    break
                except Exception:
                    assert time.monotonic() < deadline, "a freed slot was never given back"
                    await asyncio.sleep(0.1)
            status, _ = await refused_handshake(urls["b2"], TIMEOUT_S, user["access_token"])
            assert status == 429
        finally:
            await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)

    run(main)


def test_connection_established_describes_the_connection(client: httpx.Client, urls: dict[str, str]) -> None:
    user = register_and_login(client)
    claims = jwt.decode(user["access_token"], options={"verify_signature": False})

    async def main() -> None:
        ids = set()
        for url, instance in ((urls["b1"], "backend"), (urls["b2"], "backend2")):
            s = await sock(url, user)
            m = s.established
            await s.close()
            assert set(m) == {"type", "event_id", "run_id", "thread_id", "timestamp", "payload"}, m
            assert (m["event_id"], m["run_id"], m["thread_id"]) == (None, None, None), m
            assert m["timestamp"].endswith("Z"), m
            p = m["payload"]
            assert p["user_id"] == user["id"] and p["instance_id"] == instance, p
            assert len(p["connection_id"]) == 32 and int(p["connection_id"], 16) >= 0, p
            assert abs(p["server_time"] - time.time()) < 5, p
            assert p["token_expires_at"] == claims["exp"], p
            assert p["state_ttl_s"] == expected().ws.state_ttl_s, p
            # The local stack's settings (workbook.stack.backend), announced to the client.
            assert p["limits"] == {"max_connections_per_user": 20, "max_message_bytes": 65536, "rate_per_s": 20.0,
                                   "rate_burst": 40, "ping_interval_s": 1.0, "ping_timeout_s": 2.0,
                                   "replay_len": 50}, p
            ids.add(p["connection_id"])
        assert len(ids) == 2

    run(main)


# -- events -----------------------------------------------------------------------------------------


def test_run_events_arrive_in_order_on_both_instances(client: httpx.Client, api: httpx.Client,
                                                      urls: dict[str, str]) -> None:
    user = register_and_login(client)
    thread = new_thread(api, user)

    async def main() -> tuple[str, list[tuple[str, int]]]:
        s1, s2 = await sock(urls["b1"], user), await sock(urls["b2"], user)
        try:
            await s2.send("subscribe_thread", thread_id=thread)
            sub = (await s2.until("subscribed"))[-1]
            assert sub["thread_id"] == thread and sub["payload"]["threads"] == [thread], sub
            await s1.send("start_agent", agent="probe", thread_id=thread, request_id="req-gw-1")
            on1 = await s1.until("final_report")
            on2 = await s2.until("final_report")
            assert on1[0]["type"] == "run_accepted" and on1[0]["event_id"] is None, on1[0]
            run_id = on1[0]["run_id"]
            assert on1[0]["payload"]["run"]["status"] == "queued"
            for got in (on1, on2):
                assert events(got) == [(t, i + 1) for i, t in enumerate(RUN_EVENTS)], events(got)
                for m in got:
                    if m["event_id"] is not None:
                        assert (m["run_id"], m["thread_id"]) == (run_id, thread), m
                        assert m["payload"]["instance_id"] == "backend", m  # produced where the run runs
                        assert m["payload"]["context"]["request_id"] == "req-gw-1", m
            calls = [m["payload"]["call_id"] for m in on1 if m["type"].startswith("tool_")]
            assert len(calls) == 2 and calls[0] == calls[1], calls
            # Nothing more, in particular no second copy of any event.
            assert [m for m in await s2.quiet(0.3) if m.get("event_id") is not None] == []
            return run_id, events(on1)
        finally:
            await s1.close()
            await s2.close()

    run_id, seen = run(main)
    steps = api.get(f"/api/runs/{run_id}/steps", headers=bearer(user["access_token"]))
    assert steps.status_code == 200, steps.text
    assert [(s["kind"], s["event_id"]) for s in steps.json()["steps"]] == seen
    deadline = time.monotonic() + 5
    while (status := api.get(f"/api/runs/{run_id}", headers=bearer(user["access_token"])).json()["status"]) \
            != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == "completed"


def test_a_socket_only_gets_threads_it_follows(client: httpx.Client, api: httpx.Client,
                                               urls: dict[str, str]) -> None:
    user = register_and_login(client)
    followed, other = new_thread(api, user, "followed"), new_thread(api, user, "other")

    async def main() -> None:
        s = await sock(urls["b2"], user)
        try:
            await s.send("subscribe_thread", thread_id=followed)
            await s.until("subscribed")
            async with httpx.AsyncClient(base_url=urls["b1"], timeout=30,
                                         headers=bearer(user["access_token"])) as h:
                for tid in (other, followed):
                    r = await h.post(f"/api/threads/{tid}/messages", json={"content": f"to {tid}"})
                    assert r.status_code == 201, r.text
            got = await s.until("message_created")
            assert got[-1]["thread_id"] == followed and got[-1]["event_id"] == 1, got
            assert got[-1]["payload"]["message"]["content"] == f"to {followed}"
            assert not [m for m in await s.quiet(0.3) if m["type"] == "message_created"]
            await s.send("unsubscribe_thread", thread_id=followed)
            assert (await s.until("unsubscribed"))[-1]["payload"]["threads"] == []
            r = api.post(f"/api/threads/{followed}/messages", json={"content": "after"},
                         headers=bearer(user["access_token"]))
            assert r.status_code == 201
            assert not [m for m in await s.quiet(0.3) if m["type"] == "message_created"]
        finally:
            await s.close()

    run(main)


def test_resume_replays_exactly_the_missed_events_once(client: httpx.Client, api: httpx.Client,
                                                        urls: dict[str, str]) -> None:
    user = register_and_login(client)
    thread = new_thread(api, user)

    async def main() -> None:
        s1 = await sock(urls["b1"], user)
        await s1.send("start_agent", agent="probe", thread_id=thread, scenario="long", steps=12, step_delay_ms=60)
        before = events(await s1.until(lambda m: (m.get("event_id") or 0) >= 3))
        await s1.close()
        last = before[-1][1]
        await asyncio.sleep(0.4)  # the run goes on while nobody listens
        s2 = await sock(urls["b2"], user)
        try:
            await s2.send("resume", thread_id=thread, last_event_id=last)
            upto_done = await s2.until("resume_complete")
            replayed = events(upto_done)
            done = upto_done[-1]["payload"]
            assert done["replayed"] == len(replayed) >= 2, (done, replayed)
            assert [i for _, i in replayed] == list(range(last + 1, last + 1 + len(replayed))), replayed
            assert done["last_event_id"] == replayed[-1][1]
            live = events(await s2.until("final_report"))
            after = replayed + live
            ids = [i for _, i in before + after]
            assert ids == list(range(1, len(ids) + 1)), ids  # every event once, in order, none lost
            assert [t for t, _ in before + after] == ["agent_started", *["agent_thinking"] * 12,
                                                      *RUN_EVENTS[2:]]
            assert not [m for m in await s2.quiet(0.3) if m.get("event_id") is not None]
        finally:
            await s2.close()

    run(main)


def test_resume_after_the_replay_window_asks_for_a_resync(client: httpx.Client, api: httpx.Client,
                                                           urls: dict[str, str]) -> None:
    user = register_and_login(client)
    thread = new_thread(api, user)
    keep = 50  # BACKEND_WS_REPLAY_LEN in the local stack
    with httpx.Client(base_url=urls["b2"], timeout=30, headers=bearer(user["access_token"])) as h:
        for i in range(keep + 5):
            assert h.post(f"/api/threads/{thread}/messages", json={"content": f"m{i}"}).status_code == 201

    async def main() -> None:
        s = await sock(urls["b1"], user)
        try:
            await s.send("resume", thread_id=thread, last_event_id=1)
            answer = (await s.until(lambda m: m["type"] in ("resync_required", "resume_complete")))
            assert answer[-1]["type"] == "resync_required", answer
            assert answer[-1]["payload"] == {"last_event_id": 1, "oldest_event_id": 6}, answer[-1]
            assert not events(answer), "nothing is replayed when the client must resync"
            await s.send("resume", thread_id=thread, last_event_id=5)  # the oldest kept is next: a replay
            got = await s.until("resume_complete")
            assert [i for _, i in events(got)] == list(range(6, keep + 6)), events(got)
        finally:
            await s.close()

    run(main)


# -- bad client messages -----------------------------------------------------------------------------


def test_bad_messages_answer_error_and_the_socket_stays_open(client: httpx.Client, urls: dict[str, str]) -> None:
    user = register_and_login(client)

    async def main() -> None:
        s = await sock(urls["b2"], user)
        try:
            cases: list[tuple[str | bytes, str]] = [
                (json.dumps({"type": "launch_missiles"}), "unknown_type"),
                ("{not json", "invalid_json"),
                (b"\x00\x01binary", "binary_not_supported"),
                (json.dumps([1, 2]), "invalid_message"),
                (json.dumps({"no": "type"}), "invalid_message"),
                (json.dumps({"type": "subscribe_thread", "thread_id": "nope"}), "invalid_message"),
                (json.dumps({"type": "resume", "thread_id": str(uuid.uuid4()), "last_event_id": 0}),
                 "thread_not_found"),
            ]
            for i, (frame, code) in enumerate(cases):
                await s.send_raw(frame)
                err = await s.next()
                assert err["type"] == "error" and err["payload"]["code"] == code, (frame, err)
                assert err["event_id"] is None and err["payload"]["detail"], err
                await s.send("ping", payload=i)
                pong = await s.next()
                assert pong["type"] == "pong" and pong["payload"] == {"echo": i}, pong
            assert s.close_code is None
        finally:
            await s.close()
        unknown = [m for m in s.received if m["type"] == "error" and m["payload"]["code"] == "unknown_type"]
        assert unknown[0]["payload"]["type"] == "launch_missiles"

    run(main)


def test_another_users_thread_is_refused(client: httpx.Client, api: httpx.Client, urls: dict[str, str]) -> None:
    alice, bob = register_and_login(client), register_and_login(client)
    thread = new_thread(api, alice)
    missing = str(uuid.uuid4())

    async def main() -> None:
        s = await sock(urls["b2"], bob)
        try:
            answers = {}
            for kind, extra in (("subscribe_thread", {}), ("resume", {"last_event_id": 0}),
                                ("start_agent", {}), ("user_message", {"content": "hi"})):
                for tid in (thread, missing):
                    await s.send(kind, thread_id=tid, **extra)
                    err = await s.next()
                    assert err["type"] == "error", (kind, err)
                    answers[(kind, tid == thread)] = (err["payload"]["code"], err["payload"]["detail"])
            # Someone else's thread answers exactly like one that does not exist.
            assert set(answers.values()) == {("thread_not_found", "no such thread")}, answers
            r = api.post(f"/api/threads/{thread}/messages", json={"content": "private"},
                         headers=bearer(alice["access_token"]))
            assert r.status_code == 201
            assert not [m for m in await s.quiet(0.5) if m["type"] != "error"]
            assert not [m for m in s.received if "private" in json.dumps(m)]
        finally:
            await s.close()

    run(main)


# -- server-side state --------------------------------------------------------------------------------


def test_redis_keys_of_a_closed_connection_are_removed(client: httpx.Client, api: httpx.Client, stack: Stack,
                                                        urls: dict[str, str]) -> None:
    user = register_and_login(client)
    thread = new_thread(api, user)

    async def main() -> None:
        r = redis_client(stack)
        try:
            for url, instance in ((urls["b1"], "backend"), (urls["b2"], "backend2")):
                s = await sock(url, user)
                cid = s.established["payload"]["connection_id"]
                conn_key, user_key = f"ws:conn:{cid}", f"ws:user_conns:{user['id']}"
                await s.send("subscribe_thread", thread_id=thread)
                await s.until("subscribed")
                fields = {k.decode(): v.decode() for k, v in (await r.hgetall(conn_key)).items()}
                assert fields["user_id"] == user["id"] and fields["instance_id"] == instance, fields
                assert json.loads(fields["threads"]) == [thread], fields
                assert await r.sismember(user_key, cid)
                assert 0 < await r.ttl(conn_key), "a connection's keys must expire if its instance dies"
                await s.close()
                deadline = time.monotonic() + 3
                while (await r.exists(conn_key) or await r.sismember(user_key, cid)) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert not await r.exists(conn_key), f"{conn_key} outlived its connection"
                assert not await r.sismember(user_key, cid), f"{cid} still in {user_key}"
        finally:
            await r.aclose()

    run(main)


def test_concurrent_handshakes_respect_the_connection_limit(client: httpx.Client, urls: dict[str, str]) -> None:
    user = register_and_login(client)

    async def one(i: int) -> Socket | None:
        try:
            return await sock(urls["b1"] if i % 2 else urls["b2"], user)
        except InvalidStatus as e:
            assert e.response.status_code == 429, e.response.status_code
            return None

    async def main() -> int:
        opened = [s for s in await asyncio.gather(*(one(i) for i in range(40))) if s is not None]
        await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
        return len(opened)

    # At most the limit; and the refused ones did not take a slot (the attempt is undone).
    assert 0 < run(main) <= 20


def test_open_connections_keep_counting_past_the_records_ttl(client: httpx.Client, stack: Stack,
                                                             urls: dict[str, str]) -> None:
    user = register_and_login(client)

    async def main() -> None:
        opened = [await sock(urls["b1"], user) for _ in range(20)]
        r = redis_client(stack)
        try:
            cid = opened[0].established["payload"]["connection_id"]
            ttl_s = expected().ws.state_ttl_s
            assert 0 < await r.pttl(f"ws:conn:{cid}") <= ttl_s * 1000
            await asyncio.sleep(1.5 * ttl_s)  # the record is refreshed while the socket is open
            assert await r.exists(f"ws:conn:{cid}"), "the record of an open connection expired"
            assert await r.scard(f"ws:user_conns:{user['id']}") == 20
            status, answer = await refused_handshake(urls["b2"], TIMEOUT_S, user["access_token"])
            assert status == 429, answer
        finally:
            await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
            await r.aclose()

    run(main)


def test_a_lapsed_record_of_an_open_connection_is_written_again(client: httpx.Client, stack: Stack,
                                                               urls: dict[str, str]) -> None:
    # What Redis away longer than the TTL leaves: the open socket's record and set member gone.
    user = register_and_login(client)

    async def main() -> None:
        s = await sock(urls["b2"], user)
        r = redis_client(stack)
        try:
            cid = s.established["payload"]["connection_id"]
            before = await r.hgetall(f"ws:conn:{cid}")
            await r.delete(f"ws:conn:{cid}", f"ws:user_conns:{user['id']}")
            await poll(lambda: r.sismember(f"ws:user_conns:{user['id']}", cid), within_s=expected().ws.state_ttl_s,
                       what="the open connection's record written again")
            assert await r.hgetall(f"ws:conn:{cid}") == before
            assert 0 < await r.pttl(f"ws:conn:{cid}") <= expected().ws.state_ttl_s * 1000
        finally:
            await s.close()
            await r.aclose()

    run(main)


def test_concurrent_runs_on_one_thread_on_both_instances_lose_no_events(client: httpx.Client, api: httpx.Client,
                                                                         urls: dict[str, str]) -> None:
    user = register_and_login(client)
    thread = new_thread(api, user)
    per_run = 1 + 20 + 4  # agent_started, 20 x agent_thinking, tool_executing/completed, agent_completed, final

    async def main() -> list[int]:
        s = await sock(urls["b1"], user)
        try:
            await s.send("subscribe_thread", thread_id=thread)
            await s.until("subscribed")
            async with httpx.AsyncClient(timeout=30, headers=bearer(user["access_token"])) as h:
                for url in (urls["b1"], urls["b2"]):
                    r = await h.post(f"{url}/api/threads/{thread}/runs",
                                     json={"agent": "probe", "scenario": "long", "steps": 20, "step_delay_ms": 0})
                    assert r.status_code == 202, r.text
            got = await s.until(lambda m: sum(x["type"] == "final_report" for x in s.received) == 2)
            got += await s.quiet(0.3)
            return [m["event_id"] for m in got if m.get("event_id") is not None]
        finally:
            await s.close()

    assert run(main) == list(range(1, 2 * per_run + 1))


# -- regressions: bugs found in review, each test red before its fix ---------------------------------


def test_a_crashed_instances_connections_stop_counting(client: httpx.Client, stack: Stack,
                                                       urls: dict[str, str]) -> None:
    user = register_and_login(client)

    async def main() -> None:
        on1 = [await sock(urls["b1"], user) for _ in range(10)]
        on2 = [await sock(urls["b2"], user) for _ in range(10)]
        await asyncio.to_thread(stack.kill, "backend2")
        try:
            await asyncio.sleep(expected().ws.state_ttl_s + 1)  # past the record TTL of the dead instance's connections
            back = []
            try:
                for _ in range(10):  # the clients of the dead instance reconnect to the live one
                    back.append(await sock(urls["b1"], user))
            finally:
                await asyncio.gather(*(s.close() for s in back), return_exceptions=True)
        finally:
            await asyncio.gather(*(s.close() for s in on1 + on2), return_exceptions=True)
            await asyncio.to_thread(stack.restart, "backend2")

    run(main, timeout_s=60)


def test_a_malformed_event_on_the_channel_does_not_stop_delivery(client: httpx.Client, api: httpx.Client,
                                                                 stack: Stack, urls: dict[str, str]) -> None:
    user = register_and_login(client)
    thread = new_thread(api, user)

    async def main() -> None:
        r = redis_client(stack)
        s = await sock(urls["b1"], user)
        try:
            await s.send("subscribe_thread", thread_id=thread)
            await s.until("subscribed")
            await r.publish(f"ws:user:{user['id']}", "not json")
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(timeout=30, headers=bearer(user["access_token"])) as h:
                assert (await h.post(f"{urls['b1']}/api/threads/{thread}/messages",
                                     json={"content": "still there?"})).status_code == 201
            await s.until("message_created", timeout_s=3)
        finally:
            await s.close()
            await r.aclose()
            for name in ("backend", "backend2"):  # whatever happened, the next tests get working instances
                await asyncio.to_thread(stack.restart, name)

    run(main, timeout_s=60)
