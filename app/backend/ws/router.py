"""`/ws`: authenticate the handshake, enforce the per-user connection limit, then serve.

The token comes in `Authorization: Bearer <token>` or as a subprotocol `jwt.<token>` (a
browser cannot set headers; offer `jwt` too and the server selects it). A refused handshake
is an HTTP answer with the usual JSON error body: 401 for a missing, invalid, expired or
revoked token, 429 over the per-user connection limit. Once open, the first message is
`connection_established`; a token that expires or is revoked while the socket is open
closes it with 4401.
"""

from __future__ import annotations

import asyncio
import time

import redis.exceptions
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.backend import metrics
from app.backend.context import Context
from app.backend.tokens import Principal
from app.backend.ws.connection import Connection
from app.backend.ws.envelope import CLOSE_AUTH_ENDED, envelope
from app.common import auth_keys
from app.common.errors import ApiError

router = APIRouter()


def _token(ws: WebSocket) -> tuple[str | None, str | None]:
    """(token, subprotocol to select)."""
    header = ws.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), None
    offered = ws.scope.get("subprotocols", [])
    for proto in offered:
        if proto.startswith("jwt.") and len(proto) > 4:
            return proto[4:], "jwt" if "jwt" in offered else None
    return None, None


async def _refuse(ws: WebSocket, status: int, error: str, detail: str) -> None:
    metrics.ws_refused.labels(error).inc()
    body = {"error": error, "detail": detail, "request_id": None}
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        headers = {"WWW-Authenticate": 'Bearer realm="backend"'} if status == 401 else None
        await ws.send_denial_response(JSONResponse(body, status, headers=headers))
    else:
        await ws.close(1008, detail[:120])


async def _watch_token(conn: Connection, who: Principal) -> None:
    """Close the socket when its token expires (with the handshake's leeway) or is revoked,
    checked every ws_auth_recheck_s."""
    c = conn.c
    expires = who.exp + c.settings.token_leeway_s
    while True:
        left = expires - time.time()
        await asyncio.sleep(max(0.0, min(left, c.settings.ws_auth_recheck_s)))
        reason = "token expired" if time.time() >= expires else None
        try:
            if reason is None and await c.redis.exists(auth_keys.denied(who.jti)):
                reason = "token revoked"
            elif reason is None and who.session_id and not await c.redis.exists(auth_keys.session(who.session_id)):
                reason = "session ended"
        except (redis.exceptions.RedisError, OSError):
            pass  # Redis is away: the socket stays open; revocation is checked again once it is back
        if reason:
            conn.send(envelope("auth_expired", {"reason": reason}))
            await asyncio.sleep(0.05)  # let the writer send it before the close
            await conn.ws.close(CLOSE_AUTH_ENDED, reason)
            return


@router.websocket("/ws")
async def gateway(ws: WebSocket) -> None:
    c: Context = ws.app.state.ctx
    token, subprotocol = _token(ws)
    if token is None:
        return await _refuse(ws, 401, "invalid_token", "missing token: Authorization header or jwt.<token> subprotocol")
    try:
        who = await c.verifier.verify(token, "access")
    except ApiError as e:
        return await _refuse(ws, e.status, e.error, e.detail)
    conn = Connection(ws, who, c)
    if not await conn.register(c.settings.ws_max_connections_per_user):
        return await _refuse(ws, 429, "too_many_connections",
                             f"at most {c.settings.ws_max_connections_per_user} connections per user")
    try:
        await ws.accept(subprotocol=subprotocol)
    except Exception:
        await conn.unregister()
        raise
    c.hub.add(conn)
    metrics.ws_connections.inc()
    metrics.ws_connections_opened.inc()
    s = c.settings
    conn.send(envelope("connection_established", {
        "connection_id": conn.id, "user_id": who.sub, "instance_id": s.instance_id, "server_time": time.time(),
        "token_expires_at": who.exp, "state_ttl_s": s.ws_state_ttl_s,
        "limits": {"max_connections_per_user": s.ws_max_connections_per_user,
                   "max_message_bytes": s.ws_max_message_bytes, "rate_per_s": s.ws_rate_per_s,
                   "rate_burst": s.ws_rate_burst, "ping_interval_s": s.ws_ping_interval_s,
                   "ping_timeout_s": s.ws_ping_timeout_s, "replay_len": s.ws_replay_len}}))
    tasks = [asyncio.create_task(conn.writer()), asyncio.create_task(_watch_token(conn, who)),
             asyncio.create_task(conn.keep_alive()), asyncio.create_task(conn.serve())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Bookkeeping first: a task that swallows its cancellation must not keep the
        # connection counted against the user's limit.
        c.hub.remove(conn)
        metrics.ws_connections.dec()
        try:
            await conn.unregister()
        except (redis.exceptions.RedisError, OSError):
            pass  # Redis is away: the connection's keys expire with their TTL
        for t in tasks:
            t.cancel()
        done, _ = await asyncio.wait(tasks, timeout=5)
        for t in done:
            if not t.cancelled() and isinstance(e := t.exception(), Exception) and \
                    not isinstance(e, (WebSocketDisconnect, RuntimeError)):
                raise e
