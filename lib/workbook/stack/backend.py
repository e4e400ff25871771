"""The platform's backend API (`python -m app.backend`), wired to the stack's PostgreSQL, Redis and auth.

It gets its own database (`backend`), verifies tokens against auth's JWKS, and calls auth with
the `backend` service client's credentials (the same generated secret auth was seeded with).
Its JWKS and auth-breaker clocks come from local params (`expect.backend`, short); the other
timings here are shortened so the workbook's fault checks finish in seconds.
"""

from __future__ import annotations

import json
import sys

from workbook.stack.clickhouse import server_binary
from workbook.stack.platform_config import backend_env
from workbook.stack.postgres import ensure_database
from workbook.stack.service import Launch, PlatformService
from workbook.stack.state import Paths, stack_secret

DATABASE = "backend"


class BackendService(PlatformService):
    """Instance 1 is `backend`, instance n is `backend<n>`: the same app, the same database."""

    depends_on = ("postgres", "redis", "auth", "clickhouse", "llm")
    start_timeout_s = 60.0
    database_env = "BACKEND_DATABASE_URL"

    def __init__(self, instance: int = 1):
        self.name = "backend" if instance == 1 else f"backend{instance}"

    def second_instance_env(self, port: int) -> dict[str, str]:
        # An instance fails the runs its id left running when it starts: with the stack
        # instance's id, a second instance would fail that instance's live runs as its own.
        return {"BACKEND_INSTANCE_ID": f"{self.name}-second-{port}"}

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        pg, redis, auth, clickhouse, llm = self.dependencies(paths)
        pg_password = stack_secret(paths, "postgres")
        ensure_database(pg.url, pg_password, DATABASE)
        env = {
            # The limits and clocks local params expect (gateway, agents, plans, JWKS cache, auth
            # breaker, run lease, model backoff and breaker) come first; the rest is here.
            **backend_env(),
            "BACKEND_ENV": "local",
            "BACKEND_DATABASE_URL": pg.url.rsplit("/", 1)[0] + f"/{DATABASE}",
            "BACKEND_DATABASE_PASSWORD": pg_password,
            "BACKEND_REDIS_URL": redis.url,
            "BACKEND_REDIS_PASSWORD": stack_secret(paths, "redis"),
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
        }
        return Launch(argv=[sys.executable, "-m", "app.backend", "--host", "127.0.0.1", "--port", str(port)],
                      env=env)
