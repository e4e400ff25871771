"""The one counter every limit of the platform is made of: a fixed window per key, in Redis.

A hit is one Lua script run on the server: increment, and give the key the window as its TTL if
it has none yet. Being one script, it is atomic across every process of every instance (no
read-then-write gap that lets two requests through on the last slot), and the increment never
exists without its expiry (a process dying between two commands cannot leave a key that counts
for ever). The script is cached by Redis; after a failover the new primary is sent it again
(redis-py reloads a script on NOSCRIPT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis

HIT = """
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
"""


@dataclass(frozen=True)
class Window:
    count: int  # hits in this window, this one included
    left_s: int  # whole seconds until the window ends, at least 1: what a Retry-After says


class FixedWindow:
    def __init__(self, redis: Redis):
        self._hit = redis.register_script(HIT)

    async def hit(self, key: str, window_s: float) -> Window:
        count, left_ms = await self._hit(keys=[key], args=[max(1, round(window_s * 1000))])
        return Window(int(count), max(1, math.ceil(int(left_ms) / 1000)))
