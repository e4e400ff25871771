"""Login sessions in Redis, with a TTL, listed and revoked per user.

A session's id is also its refresh-token family id and travels in every token as `sid`;
a token whose session is gone is refused, so revoking a session ends its tokens at once.
At the per-user maximum the *oldest* session is evicted to admit the new login.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from app.common import auth_keys


@dataclass(frozen=True)
class Session:
    id: str
    user_id: str
    created_at: float
    ip: str
    user_agent: str
    method: str
    ttl_s: int

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": self.created_at, "ip": self.ip, "user_agent": self.user_agent,
                "method": self.method, "expires_in": self.ttl_s}


_key = auth_keys.session


def _index(user_id: str) -> str:
    return f"auth:user_sessions:{user_id}"


class SessionStore:
    def __init__(self, redis: Redis, ttl_s: int, maximum: int):
        self.redis = redis
        self.ttl_s = ttl_s
        self.maximum = maximum

    async def create(self, sid: str, user_id: str, ip: str, user_agent: str, method: str) -> list[str]:
        """Record a session; returns the ids of sessions evicted to stay within the maximum."""
        now = time.time()
        live = await self.list(user_id)
        evicted = [s.id for s in live[: max(0, len(live) - self.maximum + 1)]]
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(_key(sid), mapping={"user_id": user_id, "created_at": now, "ip": ip,
                                       "user_agent": user_agent[:256], "method": method})
            p.expire(_key(sid), self.ttl_s)
            p.zadd(_index(user_id), {sid: now})
            p.expire(_index(user_id), self.ttl_s)
            for old in evicted:
                p.delete(_key(old))
                p.zrem(_index(user_id), old)
            await p.execute()
        return evicted

    async def get(self, sid: str) -> Session | None:
        async with self.redis.pipeline(transaction=True) as p:
            p.hgetall(_key(sid))
            p.ttl(_key(sid))
            data, ttl = await p.execute()
        if not data:
            return None
        d = {k.decode(): v.decode() for k, v in data.items()}
        return Session(sid, d["user_id"], float(d["created_at"]), d["ip"], d["user_agent"], d["method"], int(ttl))

    async def exists(self, sid: str) -> bool:
        return bool(await self.redis.exists(_key(sid)))

    async def touch(self, sid: str, user_id: str) -> None:
        """A refresh keeps the session alive for another refresh lifetime."""
        async with self.redis.pipeline(transaction=True) as p:
            p.expire(_key(sid), self.ttl_s)
            p.expire(_index(user_id), self.ttl_s)
            await p.execute()

    async def list(self, user_id: str) -> list[Session]:
        """Oldest first; ids whose session expired are dropped from the index on the way."""
        ids = [i.decode() for i in await self.redis.zrange(_index(user_id), 0, -1)]
        out, gone = [], []
        for sid in ids:
            s = await self.get(sid)
            (out if s else gone).append(s or sid)
        if gone:
            await self.redis.zrem(_index(user_id), *gone)
        return out  # type: ignore[return-value]

    async def delete(self, user_id: str, sid: str) -> bool:
        async with self.redis.pipeline(transaction=True) as p:
            p.delete(_key(sid))
            p.zrem(_index(user_id), sid)
            deleted, _ = await p.execute()
        return bool(deleted)

    async def end_all(self, user_id: str) -> list[str]:
        """Delete every session of the user and the user's index (an account that is going away);
        returns the session ids ended."""
        ids = [i.decode() for i in await self.redis.zrange(_index(user_id), 0, -1)]
        async with self.redis.pipeline(transaction=True) as p:
            for sid in ids:
                p.delete(_key(sid))
            p.delete(_index(user_id))
            await p.execute()
        return ids
