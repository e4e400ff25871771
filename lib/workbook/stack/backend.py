"""The platform's backend API (`python -m app.backend`), wired to the stack's PostgreSQL, Redis and auth.

It gets its own database (`backend`), verifies tokens against auth's JWKS, and calls auth with
the `backend` service client's credentials (the same generated secret auth was seeded with).
Its JWKS and auth-breaker clocks come from local params (`expect.backend`, short); the other
timings here are shortened so the workbook's fault checks finish in seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys

from workbook.stack.clickhouse import server_binary
from workbook.stack.mail import smtp_env
from workbook.stack.payments import WEBHOOK_SECRET, register_webhook
from workbook.stack.platform_config import backend_env
from workbook.stack.platform_config import expected
from workbook.stack.tracing import tracing_env
from workbook.stack.postgres import ensure_database
from workbook.stack.redis import SENTINELS
from workbook.stack.redis import platform_env as redis_env
from workbook.stack.service import Launch, PlatformService
from workbook.stack.state import Paths, stack_secret

DATABASE = "backend"


def provider_key(paths: Paths, kid: str) -> str:
    """A 32-byte AES key (urlsafe base64) for users' provider keys, generated once per stack."""
    raw = stack_secret(paths, f"provider-key-{kid}")
    return base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest()).decode()


class BackendService(PlatformService):
    """Instance 1 is `backend`, instance n is `backend<n>`: the same app, the same database."""

    depends_on = ("postgres", "redis", "auth", "clickhouse", "llm", "mail", "payments", *SENTINELS)
    start_timeout_s = 60.0
    database_env = "BACKEND_DATABASE_URL"
    preload = ("app.backend.__main__", "app.backend.migrate", "app.backend.app", "uvicorn")

    def __init__(self, instance: int = 1):
        self.name = "backend" if instance == 1 else f"backend{instance}"

    def second_instance_env(self, port: int) -> dict[str, str]:
        # An instance fails the runs its id left running when it starts: with the stack
        # instance's id, a second instance would fail that instance's live runs as its own.
        return {"BACKEND_INSTANCE_ID": f"{self.name}-second-{port}"}

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        pg, _, auth, clickhouse, llm, mail, payments, *_ = self.dependencies(paths)
        register_webhook(payments.url, stack_secret(paths, "payments"), f"{self.url(port)}/api/billing/webhook")
        pg_password = stack_secret(paths, "postgres")
        ensure_database(pg.url, pg_password, DATABASE)
        env = {
            # The limits and clocks local params expect (gateway, agents, plans, JWKS cache, auth
            # breaker, run lease, model backoff and breaker) come first; the rest is here.
            **backend_env(),
            **tracing_env(paths, "BACKEND_"),
            "BACKEND_ENV": "local",
            "BACKEND_DATABASE_URL": pg.url.rsplit("/", 1)[0] + f"/{DATABASE}",
            "BACKEND_DATABASE_PASSWORD": pg_password,
            **redis_env(paths, "BACKEND_"),
            "BACKEND_LEADER_LEASE_S": str(expected().redis.leader_lease_s),
            "BACKEND_AUTH_URL": auth.url,
            "BACKEND_ISSUER": auth.url,
            "BACKEND_SERVICE_CLIENT_ID": "backend",
            "BACKEND_SERVICE_CLIENT_SECRET": stack_secret(paths, "auth-client-backend"),
            "BACKEND_AUTH_TIMEOUT_S": "1",
            "BACKEND_INSTANCE_ID": self.name,
            "BACKEND_RUN_STEP_DELAY_MS": "20",
            # A deletion an instance was killed in the middle of is taken over in seconds, so the
            # leftovers sweep after a run with backend kills sees it finished.
            "BACKEND_DELETION_CLAIM_IDLE_S": "5",
            "BACKEND_TEST_AGENTS": "true",  # 02's gateway checks start the scripted `probe` agent (off by default)
            "BACKEND_CLICKHOUSE_URL": clickhouse.url,
            "BACKEND_CLICKHOUSE_PASSWORD": stack_secret(paths, "clickhouse"),
            "BACKEND_CLICKHOUSE_WRITER_PASSWORD": stack_secret(paths, "clickhouse_writer"),
            "BACKEND_CLICKHOUSE_READER_PASSWORD": stack_secret(paths, "clickhouse_reader"),
            # A server gets the writer and reader from the platform's migrations; the stand-in has
            # no access control and takes them from the users file the stack gave it.
            "BACKEND_CLICKHOUSE_MANAGE_USERS": "true" if server_binary() else "false",
            "BACKEND_LLM_BASE_URL": llm.url,
            "BACKEND_LLM_API_KEY": stack_secret(paths, "llm"),
            # Team invitations go through the SMTP stand-in; checkout and its signed webhook through
            # the payment stand-in; users' provider keys are encrypted with a generated key.
            **smtp_env("BACKEND_", mail.url, stack_secret(paths, "mail")),
            "BACKEND_PAYMENTS_URL": payments.url,
            "BACKEND_PAYMENTS_API_KEY": stack_secret(paths, "payments"),
            "BACKEND_PAYMENTS_WEBHOOK_SECRET": stack_secret(paths, WEBHOOK_SECRET),
            "BACKEND_PROVIDER_KEYS": json.dumps({"k1": provider_key(paths, "k1")}),
            "BACKEND_PROVIDER_KEY_ACTIVE": "k1",
        }
        return Launch(argv=[sys.executable, "-m", "app.backend", "--host", "127.0.0.1", "--port", str(port)],
                      env=env)
