"""A Redis listener (app.common.subscription) hears again within its retry setting once Redis
returns: a real redis-server started on the port the listener has been failing to reach."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from app.common.subscription import Subscription
from workbook.stack.manager import free_port
from workbook.stack.redis import server_binary

RETRY_MAX_S = 0.1
AWAY_S = 2.0  # long enough for a backoff left at its old 2 s cap to be waiting ~1.6 s when Redis returns


async def _back_after(data_dir: Path) -> float:
    port = free_port()
    redis = Redis(port=port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    sub = Subscription(redis, "test", lambda *_: None, channels=("workbook:test",), retry_max_s=RETRY_MAX_S)
    sub.start()
    server: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.sleep(AWAY_S)
        assert not sub.listening, "listening with no Redis"
        server = subprocess.Popen([str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(data_dir)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = Redis(port=port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
        deadline = time.monotonic() + 5
        while True:  # from the moment the server answers
            try:
                await probe.ping()
                break
            except RedisConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                await asyncio.sleep(0.01)
        await probe.aclose()
        up = time.monotonic()
        while not sub.listening:
            assert time.monotonic() - up < 5, "the listener never came back"
            await asyncio.sleep(0.01)
        return time.monotonic() - up
    finally:
        await sub.stop()
        await redis.aclose()
        if server is not None:
            server.terminate()
            server.wait()


def test_listener_back_within_its_retry_once_redis_returns(tmp_path: Path) -> None:
    took = asyncio.run(_back_after(tmp_path))
    assert took <= RETRY_MAX_S + 0.3, f"listening {took:.2f} s after Redis answered (retry within {RETRY_MAX_S} s)"
