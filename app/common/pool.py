"""The services' PostgreSQL engines: a pool sized by settings that says how it is doing, and a
session per connection that names the service and the acting user.

Every connection carries `application_name` (the service, and the backend's instance id), so
`pg_stat_activity` tells whose connections are open, idle or stuck. A checkout past size +
overflow waits at most `db_pool_timeout_s`, then fails with SQLAlchemy's TimeoutError, which
the error handlers answer with 503 and Retry-After (`app.common.errors`): a saturated pool
refuses quickly instead of letting requests pile up behind it. Pre-ping drops connections a
PostgreSQL restart killed, so the first request after the restart does not fail on one.

`acting_as` is the user a request acts for; each checkout writes it into the session's
`app.actor` setting, which the audit triggers read (backend migration 0006), so an audited
change names its user whichever code path made it, and a background task's change names none.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

acting_as: ContextVar[str | None] = ContextVar("acting_as", default=None)


class MeteredPool(AsyncAdaptedQueuePool):
    """A queue pool that counts checkouts waiting for a connection and those that timed out."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.waiting = 0
        self.timeouts = 0

    def _do_get(self) -> Any:
        queued = self._pool.empty() and self._overflow >= self._max_overflow
        self.waiting += queued
        try:
            return super()._do_get()
        except exc.TimeoutError:
            self.timeouts += 1
            raise
        finally:
            self.waiting -= queued


def make_engine(url: URL, application_name: str, pool_size: int, max_overflow: int, pool_timeout_s: float,
                connect_timeout_s: float) -> AsyncEngine:
    engine = create_async_engine(
        url, poolclass=MeteredPool, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
        connect_args={"timeout": connect_timeout_s, "server_settings": {"application_name": application_name}})

    @event.listens_for(engine.sync_engine, "checkout")
    def _stamp_actor(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        # Always written: a connection last used by another user's request must not carry their id.
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT set_config('app.actor', $1, false)", (acting_as.get() or "",))
            cursor.close()
        except Exception as e:
            # A connection a crash left mid-operation ("another operation is in progress") passes
            # the pre-ping's liveness but not this: the pool drops it and checks out another (a
            # fresh connect, which fails as "postgres unavailable" while the server is away).
            raise exc.DisconnectionError(f"connection unusable at checkout: {type(e).__name__}") from e

    return engine


def stats(engine: AsyncEngine) -> dict[str, int]:
    """The pool as `/health/ready` and `/metrics` report it."""
    pool = engine.pool
    assert isinstance(pool, MeteredPool)
    return {"size": pool.size(), "max_overflow": pool._max_overflow, "checked_out": pool.checkedout(),
            "idle": pool.checkedin(), "overflow": max(pool.overflow(), 0), "waiting": pool.waiting,
            "timeouts": pool.timeouts, "timeout_s": pool.timeout()}
