"""The backend's side of deleting an account: consume auth's `UserDeleted` events and delete
the user's data (`app.backend.user_data`).

Each instance is a consumer of the group `backend` on the deletions stream
(`app.common.user_deletions`). An entry is acknowledged, and removed from the stream, only once
the user's data is gone, so it is never lost:

- first the entries this instance holds pending (an attempt that could not finish: the user's
  runs were still stopping, or a store was away), each retried after `deletion_retry_s`;
- then entries another instance has held longer than `deletion_claim_idle_s` (it died);
- then new ones. The group's position survives restarts, so entries published while every
  backend was down are read when one starts.

A user's runs are stopped before anything is deleted: a run still going would write its last
steps, usage and ClickHouse rows after the deletion. Runs of this instance are cancelled at
once; runs elsewhere get the stop flag every instance honours, and the entry waits for them.
One deletion of a user runs at a time across instances (a Redis lock), so two instances never
copy the same usage events to the tombstone twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.exceptions import RedisError, ResponseError

from app.backend import user_data
from app.backend.context import Context
from app.common.user_deletions import GROUP, STREAM, UserDeleted

log = logging.getLogger("app.backend.deletions")

BATCH = 10
BLOCK_MS = 1000  # below the Redis client's socket timeout, which would otherwise cut the read


class RunsStillGoing(Exception):
    """The user has runs that have not stopped yet: try the entry again later."""


class DeletionConsumer:
    def __init__(self, c: Context):
        self.c = c
        self.consumer = c.settings.instance_id
        self._retry_at: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self._ensure_group()
                for entry_id, fields in await self._next():
                    await self._handle(entry_id, fields)
                if self._failing:
                    log.info("user deletions: reading the stream again")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                if not self._failing:
                    log.warning("user deletions: Redis unavailable (%s); retrying", type(e).__name__)
                self._failing = True
                await asyncio.sleep(self.c.settings.deletion_retry_s)
            except Exception:
                log.exception("user deletions: reading the stream failed")
                await asyncio.sleep(self.c.settings.deletion_retry_s)

    async def _ensure_group(self) -> None:
        try:
            # From the stream's start: entries written before any backend ever ran are read too.
            await self.c.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def _next(self) -> list[tuple[str, dict[bytes, bytes]]]:
        r, now = self.c.redis, time.monotonic()
        mine = [(_id(e), f) for e, f in _entries(await r.xreadgroup(GROUP, self.consumer, {STREAM: "0"}, count=BATCH))]
        self._retry_at = {e: at for e, at in self._retry_at.items() if e in dict(mine)}
        due = [(e, f) for e, f in mine if self._retry_at.get(e, 0) <= now]
        if due:
            return due
        idle_ms = int(self.c.settings.deletion_claim_idle_s * 1000)
        claimed = await r.xautoclaim(STREAM, GROUP, self.consumer, idle_ms, "0-0", count=BATCH)
        taken = [(_id(e), f) for e, f in claimed[1] if f]
        if taken:
            return taken
        if self._retry_at:
            # Own pending entries wait for their retry: wake up for them, not only for new ones.
            block = max(1, min(BLOCK_MS, int((min(self._retry_at.values()) - now) * 1000)))
        else:
            block = BLOCK_MS
        new = await r.xreadgroup(GROUP, self.consumer, {STREAM: ">"}, count=BATCH, block=block)
        return [(_id(e), f) for e, f in _entries(new)]

    async def _handle(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        event = UserDeleted.from_fields(fields)
        try:
            await self.purge(event)
        except RunsStillGoing:
            self._retry_at[entry_id] = time.monotonic() + self.c.settings.deletion_retry_s
            return
        except Exception as e:  # a store away: the entry stays pending and is tried again
            log.warning("user deletion %s: not finished (%s: %s); retrying", entry_id, type(e).__name__, e)
            self._retry_at[entry_id] = time.monotonic() + self.c.settings.deletion_retry_s
            return
        async with self.c.redis.pipeline(transaction=True) as p:
            p.xack(STREAM, GROUP, entry_id)
            # Nothing links the tombstone to the user once the entry is gone.
            p.xdel(STREAM, entry_id)
            await p.execute()
        self._retry_at.pop(entry_id, None)

    async def purge(self, event: UserDeleted) -> None:
        """Stop the user's runs, then delete their data everywhere (RunsStillGoing while runs of
        other instances are still stopping)."""
        c, uid = self.c, event.user_id
        # A lease, not a long lock: renewed while this instance works, so an instance that dies
        # mid-deletion holds the user back no longer than it holds its stream entries.
        ttl = c.settings.deletion_claim_idle_s
        lock = c.redis.lock(f"deletion:lock:{uid}", timeout=ttl)
        if not await lock.acquire(blocking=False):
            raise RunsStillGoing(f"another instance is deleting {uid}")
        renewing = asyncio.create_task(_renew(lock, ttl / 3))
        try:
            held = await user_data.holdings(c.db, uid)
            if held.active_runs:
                await c.runner.stop_runs(held.active_runs)
                held = await user_data.holdings(c.db, uid)
                if held.active_runs:
                    raise RunsStillGoing(f"{len(held.active_runs)} run(s) of {uid} still stopping")
            await user_data.purge_clickhouse(c.clickhouse, uid, event.tombstone)
            await user_data.purge_redis(c.redis, uid, held)
            threads = await user_data.purge_postgres(c.db, uid, event.tombstone)
        finally:
            renewing.cancel()
            try:
                await lock.release()
            except (RedisError, OSError):
                pass  # it expires after deletion_claim_idle_s
        log.info("user %s deleted: %d thread(s), %d run(s)", uid, threads, len(held.runs))


async def _renew(lock: Any, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await lock.reacquire()
        except (RedisError, OSError) as e:
            log.warning("user deletion lock not renewed (%s): another instance may take the user over", e)
            return


def _entries(reply: Any) -> list[tuple[Any, dict[bytes, bytes]]]:
    """The entries of an XREADGROUP reply for the one stream read."""
    return [(e, f) for _, entries in reply or [] for e, f in entries if f]


def _id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
