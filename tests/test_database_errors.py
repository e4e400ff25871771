"""How the platform answers a database that went away, a pool with nothing free, or a Redis that
is not writable during a failover: 503 with a machine-readable reason and Retry-After, never a
500 (app.common.errors)."""

from __future__ import annotations

import asyncpg
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.common import errors


class _Orig(Exception):
    def __init__(self, sqlstate: str):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _app(exc: Exception) -> TestClient:
    app = FastAPI()
    errors.install(app, http_dependency="auth")

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


def test_pool_timeout_is_503_pool_exhausted() -> None:
    resp = _app(sqlalchemy.exc.TimeoutError("QueuePool limit reached")).get("/boom")
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert resp.json()["reason"] == "pool_exhausted" and resp.json()["dependency"] == "postgres"


def test_session_ended_by_the_server_is_503() -> None:
    exc = sqlalchemy.exc.DBAPIError("INSERT ...", {}, _Orig("57P01"))
    resp = _app(exc).get("/boom")
    assert resp.status_code == 503 and resp.json()["reason"] == "unreachable"


def test_other_database_errors_stay_500() -> None:
    exc = sqlalchemy.exc.DBAPIError("INSERT ...", {}, _Orig("23514"))
    resp = _app(exc).get("/boom")
    assert resp.status_code == 500 and resp.json()["error"] == "internal_error"


def test_asyncpg_names_the_sqlstates_treated_as_lost() -> None:
    assert asyncpg.AdminShutdownError.sqlstate == "57P01"
    assert all(code.startswith(("08", "57P")) for code in errors.LOST_SQLSTATES)


def test_write_to_a_demoted_redis_primary_is_503() -> None:
    resp = _app(redis.exceptions.ReadOnlyError("You can't write against a read only replica.")).get("/boom")
    assert resp.status_code == 503 and resp.json()["dependency"] == "redis", resp.json()
