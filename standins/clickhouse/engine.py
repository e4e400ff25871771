"""chDB connections as ClickHouse sessions: a request's settings and database applied to a
connection and put back afterwards, and one statement executed."""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import chdb  # noqa: F401  (the package import loads the engine that _chdb binds to)
from chdb import _chdb

from standins.clickhouse.errors import ClickHouseError
from standins.clickhouse.sql import Statement

log = logging.getLogger("standins.clickhouse")

DEFAULT_SESSION_TIMEOUT = 60
# Statements whose result ClickHouse sends with an X-ClickHouse-Format header even when empty.
RESULT_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK"})


def connect(data_dir: str) -> Any:
    return _chdb.connect(data_dir)  # type: ignore[attr-defined]  # chDB's stub omits it


@dataclass
class Outcome:
    body: bytes
    format: str | None  # set when the statement produced a result set
    timezone: str
    summary: dict[str, str]


@dataclass
class Baseline:
    """A session's own state, which a request's settings and database are put back to."""

    names: frozenset[str]  # the settings `saved` covers
    database: str
    timezone: str
    saved: list[list[str]]  # [name, value, changed] as system.settings shows them


@dataclass
class Session:
    conn: Any  # chdb._chdb.connect has no type stub
    user: str = "default"  # a session is its user's: another user's request for it is refused
    lock: threading.Lock = field(default_factory=threading.Lock)
    timeout: float = DEFAULT_SESSION_TIMEOUT
    last_used: float = field(default_factory=time.monotonic)
    # Reading system.settings takes milliseconds, so it is read again only after SET or USE,
    # or when a request overrides other settings than the previous one.
    baseline: Baseline | None = None


@dataclass
class Lease:
    """A request's use of a chDB connection."""

    conn: Any
    session: Session | None  # None: a new connection that ends with the request
    broken: bool = False  # the session's state could not be restored, so the session must go


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def run(lease: Lease, stmt: Statement, fmt: str, params: dict[str, str], settings: dict[str, str],
        database: str | None, server_tz: str) -> Outcome:
    """Run one statement with the request's settings and database, then restore the session's."""
    conn, session = lease.conn, lease.session
    if stmt.keyword in ("SET", "USE"):
        if session is not None:
            session.baseline = None
        return execute(conn, stmt, fmt, params, server_tz)
    if session is None:
        base = Baseline(frozenset(), "default", server_tz, [])
    elif session.baseline is not None and session.baseline.names == frozenset(settings):
        base = session.baseline
    else:
        base = session.baseline = read_baseline(conn, settings)
    switch_db = bool(database) and database != base.database
    try:
        if settings:
            conn.query("SET " + ", ".join(f"{k} = {quote_string(v)}" for k, v in settings.items()), "TSV")
        if switch_db:
            conn.query(f"USE {quote_identifier(database or '')}", "TSV")
        return execute(conn, stmt, fmt, params, settings.get("session_timezone") or base.timezone)
    finally:
        if session is not None:
            try:
                restore(conn, base, switch_db)
            except RuntimeError as exc:  # e.g. readonly=1 in the URL forbids setting anything back
                log.warning("session settings not restored, dropping the session: %s",
                            ClickHouseError.from_chdb(exc).name)
                lease.broken = True


def read_baseline(conn: Any, settings: dict[str, str]) -> Baseline:
    names = ", ".join(quote_string(name) for name in settings) or "''"
    database, tz, saved = json.loads(conn.query(
        "SELECT currentDatabase(), timezone(), groupArray([name, value, toString(changed)]) "
        f"FROM system.settings WHERE name IN ({names})", "JSONCompactEachRow").bytes())
    return Baseline(frozenset(settings), database, tz, saved)


def restore(conn: Any, base: Baseline, switch_db: bool) -> None:
    if base.saved:
        # A value system.settings shows quoted is an expression such as 'auto(2)', valid as is.
        conn.query("SET " + ", ".join(
            f"{name} = {value if value[:1] == value[-1:] == chr(39) else quote_string(value)}"
            if changed == "1" else f"{name} = DEFAULT" for name, value, changed in base.saved), "TSV")
    if switch_db:
        conn.query(f"USE {quote_identifier(base.database)}", "TSV")


def execute(conn: Any, stmt: Statement, fmt: str, params: dict[str, str], tz: str) -> Outcome:
    started = time.monotonic()
    if stmt.data is not None:
        inserter = conn.send_insert(stmt.sql.decode(), stmt.format)
        try:
            conn.insert_append(inserter, stmt.data)
            done = conn.insert_done(inserter)
        except RuntimeError:
            with suppress(RuntimeError):  # the insert's own error is the one to report
                conn.insert_cancel(inserter)
            raise
        return Outcome(b"", None, tz, {
            "read_rows": "0", "read_bytes": "0", "written_rows": str(done.rows_written()),
            "written_bytes": str(done.bytes_written()), "result_bytes": "0",
            "elapsed_ns": str(int(done.elapsed() * 1e9))})
    if conn.classify_query(stmt.sql)["statement_count"] > 1:
        raise ClickHouseError(62, "Syntax error (Multi-statements are not allowed)", "SYNTAX_ERROR")
    fmt = stmt.format or fmt
    result = conn.query(stmt.sql, fmt, params=params)
    body = result.bytes()
    produced = fmt if body or stmt.keyword in RESULT_KEYWORDS else None
    return Outcome(body, produced, tz, {
        "read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
        "written_rows": str(result.rows_written()), "written_bytes": str(result.bytes_written()),
        "result_bytes": str(len(body)),
        "elapsed_ns": str(int((time.monotonic() - started) * 1e9))})
