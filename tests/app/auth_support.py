"""Helpers for the platform's integration tests: the stack handle, clients, extra processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from workbook.stack.auth import AuthService
from workbook.stack.backend import BackendService
from workbook.stack.manager import Stack, free_port
from workbook.stack.clickhouse import ClickHouse
from workbook.stack.llm_standin import LlmStandin
from workbook.stack.mail import MailStandin
from workbook.stack.oidc import OidcProvider
from workbook.stack.payments import PaymentsStandin
from workbook.stack.postgres import Postgres
from workbook.stack.redis import SENTINELS, Redis, RedisReplica, RedisSentinel
from workbook.stack.state import stack_secret

# Auth sends its verification and reset emails through the SMTP stand-in and finds the Redis
# primary through the Sentinels.
DEPENDENCIES = [Postgres(), Redis(), RedisReplica(), *(RedisSentinel(n) for n in SENTINELS),
                OidcProvider(), MailStandin()]
# What the backend needs besides auth: its agents' ClickHouse and model provider, the payment provider.
BACKEND_DEPENDENCIES = [ClickHouse(), LlmStandin(), PaymentsStandin()]


@dataclass
class AuthStack:
    stack: Stack
    url: str

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment the stack gives auth, with overrides (a port is only a placeholder)."""
        launch = AuthService().prepare(self.stack.paths, 0, stack_secret(self.stack.paths, "auth"))
        env = {k: v for k, v in launch.env.items() if k not in ("AUTH_ISSUER", "AUTH_OIDC_REDIRECT_URI")}
        return {**os.environ, **env, **overrides}

    def secret(self, name: str) -> str:
        return stack_secret(self.stack.paths, name)

    def service_url(self, name: str) -> str:
        return self.stack.state().services[name].url


def random_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def new_email(tag: str = "u") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


PASSWORD = "correct horse battery"


def register_and_login(c: httpx.Client, email: str | None = None, **headers: str) -> dict:
    email = email or new_email()
    r = c.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = c.post("/auth/login", json={"email": email, "password": PASSWORD}, headers=headers)
    assert r.status_code == 200, r.text
    tokens = r.json()
    me = c.get("/auth/me", headers=bearer(tokens["access_token"])).json()
    return {**tokens, "email": email, "id": me["id"]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.auth", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@contextmanager
def spawn_auth(env: dict[str, str], log: Path) -> Iterator[str]:
    """One more real auth process with these settings; yields its URL once it is ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _serving("app.auth", port, {**env, "AUTH_ISSUER": env.get("AUTH_ISSUER", url)}, log):
        yield url


def backend_env(stack: Stack, **overrides: str) -> dict[str, str]:
    """The environment the stack gives a backend, as a new instance of its own: another instance
    id, so its startup never fails the runs of the stack's instances as its own leftovers."""
    launch = BackendService().prepare(stack.paths, 0, "")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    return {**inherited, **launch.env, "BACKEND_INSTANCE_ID": f"extra-{uuid.uuid4().hex[:8]}", **overrides}


@contextmanager
def spawn_backend(env: dict[str, str], log: Path) -> Iterator[str]:
    """One more real backend process with these settings; yields its URL once it is ready."""
    port = free_port()
    with _serving("app.backend", port, env, log):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def _serving(module: str, port: int, env: dict[str, str], log: Path) -> Iterator[None]:
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"{module} did not start: {log.read_text()}")
        yield
    finally:
        proc.terminate()
        proc.wait(15)
