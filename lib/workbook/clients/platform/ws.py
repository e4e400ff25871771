"""Client sockets of the backend's WebSocket gateway (`/ws`).

    sock = await api.socket(ck, user)                 # open, `connection_established` read, closed with the check
    await sock.send("start_agent", thread_id=tid, input="What did my workload cost last week?")
    events = await sock.until("final_report")          # every message up to and including the first final_report
    refused = await api.socket_refused(token=None)     # a handshake the gateway must refuse: (status, body)

Received messages are kept in order (`sock.received`); `until` and `next` wait with a
deadline (the env's request timeout unless given) and fail naming what did arrive.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from workbook.clients.platform.common import PlatformError

Match = str | Callable[[dict[str, Any]], bool]


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/") + "/ws"


class Socket:
    def __init__(self, conn: ClientConnection, timeout_s: float):
        self.conn, self.timeout_s = conn, timeout_s
        self.received: list[dict[str, Any]] = []
        self._unread: list[dict[str, Any]] = []
        self.established: dict[str, Any] = {}

    @property
    def connection_id(self) -> str:
        """The id the gateway gave this connection (its Redis record is `ws:conn:<id>`)."""
        return self.established["payload"]["connection_id"]

    @property
    def instance_id(self) -> str:
        """The backend instance serving this socket, as it announced itself."""
        return self.established["payload"]["instance_id"]

    @property
    def limits(self) -> dict[str, Any]:
        """The limits the gateway announced in `connection_established`."""
        return self.established["payload"]["limits"]

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code

    @property
    def close_reason(self) -> str | None:
        return self.conn.close_reason

    async def send(self, type_: str, **fields: Any) -> None:
        await self.conn.send(json.dumps({"type": type_, **fields}))

    async def send_raw(self, data: str | bytes) -> None:
        await self.conn.send(data)

    async def next(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The next message not yet returned by `next`/`until`."""
        if self._unread:
            return self._unread.pop(0)
        raw = await asyncio.wait_for(self.conn.recv(), timeout_s or self.timeout_s)
        message = json.loads(raw)
        self.received.append(message)
        return message

    async def until(self, match: Match, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Messages up to and including the first that matches (a type, or a predicate)."""
        test = (lambda m: m.get("type") == match) if isinstance(match, str) else match
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        seen: list[dict[str, Any]] = []
        while True:
            left = deadline - time.monotonic()
            try:
                message = await self.next(max(left, 0.001))
            except (TimeoutError, ConnectionClosed) as e:
                got = [m.get("type") for m in seen]
                raise PlatformError(f"waited for {match if isinstance(match, str) else 'a match'}: "
                                    f"{type(e).__name__}; got {got[-20:]}") from None
            seen.append(message)
            if test(message):
                return seen

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Whatever arrives within `seconds` (for checks that nothing, or nothing more, arrives)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(await self.next(left))
            except (TimeoutError, ConnectionClosed):
                break
        return got

    async def closed(self, timeout_s: float | None = None) -> tuple[int | None, str | None]:
        """Wait for the server to close the socket; its close code and reason. Messages arriving
        meanwhile are read and kept for `next`: past websockets' queue of unread messages the
        transport stops reading, and a transport that does not read never sees the peer go."""
        limit = timeout_s or self.timeout_s
        deadline = time.monotonic() + limit
        try:
            while (left := deadline - time.monotonic()) > 0:
                message = json.loads(await asyncio.wait_for(self.conn.recv(), left))
                self.received.append(message)
                self._unread.append(message)
        except ConnectionClosed:
            return self.conn.close_code, self.conn.close_reason
        except TimeoutError:
            pass
        raise PlatformError(f"the socket is still open after {limit}s")

    async def close(self, code: int = 1000) -> None:
        await self.conn.close(code)

    def abort(self) -> None:
        """The network goes away: no close frame, the server learns it from the dead TCP connection."""
        self.conn.transport.abort()


def run_events(messages: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The run's events among a socket's messages (acks, errors and other runs left out)."""
    return [m for m in messages if m.get("run_id") == run_id and m.get("event_id") is not None]


async def open_socket(http_url: str, timeout_s: float, token: str | None, via: str = "header",
                      **kwargs: Any) -> Socket:
    """Open and read `connection_established`. via="header" (Authorization) or "subprotocol" (jwt.<token>)."""
    headers = {"Authorization": f"Bearer {token}"} if token and via == "header" else None
    protocols = [f"jwt.{token}", "jwt"] if token and via == "subprotocol" else None
    conn = await websockets.connect(ws_url(http_url), additional_headers=headers, subprotocols=protocols,
                                    open_timeout=timeout_s, max_size=None, **kwargs)
    sock = Socket(conn, timeout_s)
    first = await sock.next()
    if first.get("type") != "connection_established":
        await conn.close()
        raise PlatformError(f"first message was {first.get('type')!r}, not connection_established")
    sock.established = first
    return sock


async def refused_handshake(http_url: str, timeout_s: float, token: str | None, via: str = "header",
                            headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """A handshake that must be refused: the HTTP status and JSON body of the refusal."""
    h = dict(headers or {})
    if token and via == "header":
        h["Authorization"] = f"Bearer {token}"
    protocols = [f"jwt.{token}", "jwt"] if token and via == "subprotocol" else None
    try:
        conn = await websockets.connect(ws_url(http_url), additional_headers=h, subprotocols=protocols,
                                        open_timeout=timeout_s)
    except InvalidStatus as e:
        body = e.response.body or b"{}"
        return e.response.status_code, json.loads(body) if body.strip().startswith(b"{") else {"raw": body[:200]}
    await conn.close()
    raise PlatformError("the gateway accepted a handshake it should have refused")
