"""Hot reload of the documented subset of settings (`settings.RELOADABLE`), on every instance.

A change is validated against the whole settings model first: a bad value is refused naming
the setting and the running configuration stays; a setting outside the subset is refused as
needing a restart. An accepted change is applied here, stored in Redis (so an instance that
starts later, or missed the message, takes it too) and announced on a pub/sub channel the other
instances listen on; each also re-reads the stored change every `RESYNC_S`, which bounds how long
an instance can lag behind when a message is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from redis.asyncio import Redis

from app.common.errors import ApiError
from app.common.settings import RELOAD_SAME_KEYS, RELOADABLE, _ServiceSettings

log = logging.getLogger("app.config")

S = TypeVar("S", bound=_ServiceSettings)
RESYNC_S = 2.0


def apply_log_level(level: str) -> None:
    for name in ("", "app", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(level)


class LiveConfig(Generic[S]):
    def __init__(self, service: str, redis: Redis, get: Callable[[], S], put: Callable[[S], None]):
        self.service, self.redis, self.get, self.put = service, redis, get, put
        self.key, self.channel = f"config:{service}:overrides", f"config:{service}:reload"
        self.version = 0
        self.reloaded: set[str] = set()
        self.base = get()
        # Subscribed to the reload channel now: a reload made while not is only seen at the next resync.
        self.listening = False
        self._task: asyncio.Task[None] | None = None

    def validated(self, changes: dict[str, Any]) -> S:
        """The settings with `changes` applied, or an ApiError naming what is refused."""
        current = self.get()
        names = type(current).model_fields
        unknown = sorted(k for k in changes if k not in names)
        if unknown:
            raise ApiError(422, "unknown_setting", f"no such setting: {', '.join(unknown)}")
        fixed = sorted(k for k in changes if k not in RELOADABLE)
        if fixed:
            raise ApiError(409, "restart_required", f"{', '.join(fixed)} take effect only on a restart; "
                           f"reloadable: {', '.join(n for n in RELOADABLE if n in names)}")
        for name in RELOAD_SAME_KEYS:
            keys = getattr(self.base, name, None)
            if name in changes and isinstance(changes[name], dict) and keys is not None and set(changes[name]) != set(keys):
                raise ApiError(422, "invalid_setting", f"refused, configuration unchanged: {name}: a reload changes "
                               f"the values of {', '.join(keys)}, it adds or removes none")
        data = {name: getattr(current, name) for name in names}
        try:
            return type(current).model_validate({**data, **changes})
        except ValidationError as e:
            bad = ", ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise ApiError(422, "invalid_setting", f"refused, configuration unchanged: {bad}") from None

    def _apply(self, changes: dict[str, Any], version: int) -> None:
        new = self.validated(changes) if changes else self.base
        self.put(new)
        self.version, self.reloaded = version, set(changes)
        apply_log_level(new.log_level)
        log.info("%s configuration version %d applied (%s)", self.service, version, ", ".join(sorted(changes)) or "defaults")

    async def change(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Validate, then apply here and on every other instance; returns the new version."""
        stored = await self._stored()
        merged = {**(stored["changes"] if stored else {}), **changes}
        self.validated(merged)
        version = await self.redis.incr(f"{self.key}:version")
        await self.redis.set(self.key, json.dumps({"version": version, "changes": merged}))
        self._apply(merged, version)
        await self.redis.publish(self.channel, str(version))
        return {"version": version, "changes": merged}

    async def reset(self) -> dict[str, Any]:
        """Back to the configuration the service started with, everywhere."""
        version = await self.redis.incr(f"{self.key}:version")
        await self.redis.set(self.key, json.dumps({"version": version, "changes": {}}))
        self._apply({}, version)
        await self.redis.publish(self.channel, str(version))
        return {"version": version, "changes": {}}

    async def _stored(self) -> dict[str, Any] | None:
        raw = await self.redis.get(self.key)
        return json.loads(raw) if raw else None

    async def sync(self) -> None:
        stored = await self._stored()
        if stored and stored["version"] > self.version:
            try:
                self._apply(stored["changes"], stored["version"])
            except ApiError as e:  # stored by an instance of other code: keep ours, say why
                log.warning("%s configuration version %d not applied: %s", self.service, stored["version"], e.detail)
                self.version = stored["version"]

    def start(self) -> None:
        apply_log_level(self.get().log_level)
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        while True:
            try:
                await self.sync()
                async with self.redis.pubsub() as ps:
                    await ps.subscribe(self.channel)
                    self.listening = True
                    while True:
                        # A message, or RESYNC_S without one: either way the stored change decides.
                        await ps.get_message(ignore_subscribe_messages=True, timeout=RESYNC_S)
                        await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis away: keep the running configuration, try again
                self.listening = False
                log.warning("%s configuration listener: %s", self.service, type(e).__name__)
                await asyncio.sleep(min(RESYNC_S, self.get().redis_retry_max_s))
