"""One backend instance at a time leads: it holds a lease in Redis and runs the work only one
instance may do (the stale-run sweeper).

The lease is `backend:leader` = "<instance>|<token>" with a TTL of `leader_lease_s`; taking it
when it is free draws the next fencing token (`backend:leader:token`, INCR, so tokens only grow).
The holder renews it every third of the lease; when the holder dies the key lapses and another
instance takes it, with a larger token, within a lease.

A holder paused past its lease (a stop, a long GC, a partition) still believes it leads when it
wakes, and its local clock cannot tell it otherwise. Each job therefore records itself through a
fenced write: a Lua script that refuses a token smaller than the newest one drawn (a successor's,
from the moment it took the lease), atomically with the write. A stale holder's work is refused, counted
(`backend_leader_fenced_total`), and it steps down. Each job's record names its period (`slot`):
two leaders at once would record one slot twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.backend import metrics

log = logging.getLogger("app.backend.leader")
LEASE_KEY, TOKEN_KEY, JOBS_KEY = "backend:leader", "backend:leader:token", "backend:leader:jobs"
JOBS_KEPT = 1000

# KEYS: lease, token counter; ARGV: instance, ttl ms. Returns the holder's token if it is us, else 0.
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if not held then
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
  return token
end
local sep = string.find(held, '|', 1, true)
if string.sub(held, 1, sep - 1) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(held, sep + 1))
end
return 0
"""

# KEYS: token counter, jobs stream; ARGV: token, instance, slot, job, kept. 1 if written, 0 if refused.
_FENCED_RECORD = """
if tonumber(ARGV[1]) < tonumber(redis.call('GET', KEYS[1]) or '0') then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'token', ARGV[1], 'instance', ARGV[2],
           'slot', ARGV[3], 'job', ARGV[4])
return 1
"""


class Leader:
    def __init__(self, redis: Redis, instance_id: str, lease_s: float, job: Callable[[], Awaitable[None]]):
        self.redis, self.instance_id, self.lease_s, self.job = redis, instance_id, lease_s, job
        self.token = 0  # ours while we lead, 0 otherwise
        self.fenced = 0
        self._acquire = redis.register_script(_ACQUIRE)
        self._record = redis.register_script(_FENCED_RECORD)

    @property
    def leading(self) -> bool:
        return self.token > 0

    def public(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "leading": self.leading, "token": self.token,
                "lease_s": self.lease_s, "fenced": self.fenced}

    async def holder(self) -> dict[str, Any]:
        """Who holds the lease now, by Redis (not by this instance's belief)."""
        held = await self.redis.get(LEASE_KEY)
        if held is None:
            return {"instance_id": None, "token": None}
        instance, token = held.decode().rsplit("|", 1)
        return {"instance_id": instance, "token": int(token), "ttl_ms": await self.redis.pttl(LEASE_KEY)}

    async def run(self) -> None:
        """Lead when possible: the job (fenced) first, as a holder that slept through its lease
        would, then the lease renewed or taken."""
        period = self.lease_s / 3
        while True:
            try:
                if self.leading:
                    await self.job()
                    if not await self._fenced_record("sweep", int(time.time() // period)):
                        self.fenced += 1
                        metrics.leader_fenced.inc()
                        log.warning("leader %s: token %s fenced off, stepping down", self.instance_id, self.token)
                        self.token = 0
                token = int(await self._acquire(keys=[LEASE_KEY, TOKEN_KEY],
                                                args=[self.instance_id, max(1, round(self.lease_s * 1000))]))
                if token != self.token:
                    log.info("leader %s: token %s -> %s", self.instance_id, self.token, token)
                self.token = token
            except (RedisError, OSError):
                self.token = 0  # unsure of the lease: do nothing only a leader may do
            except Exception:
                log.exception("leader loop failed")
            await asyncio.sleep(period)

    async def _fenced_record(self, job: str, slot: int) -> bool:
        return bool(await self._record(keys=[TOKEN_KEY, JOBS_KEY],
                                       args=[self.token, self.instance_id, slot, job, JOBS_KEPT]))
