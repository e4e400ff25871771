"""The HTTP server: ClickHouse's URL parameters, authentication, sessions and replies."""

from __future__ import annotations

import base64
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from standins.clickhouse.encoding import content_type, decompress, form_fields
from standins.clickhouse.engine import (DEFAULT_SESSION_TIMEOUT, Lease, Outcome, Session, connect, log, quote_string,
                                        run)
from standins.clickhouse.errors import HTTP_STATUS, ClickHouseError
from standins.clickhouse.sql import Statement, parse
from standins.clickhouse.users import Login

# URL parameters that the HTTP layer consumes; every other one is a setting.
RESERVED_PARAMS = frozenset({
    "query", "database", "default_format", "user", "password", "quota_key", "query_id", "session_id",
    "session_timeout", "session_check", "close_session", "compress", "decompress", "buffer_size",
    "wait_end_of_query", "client_protocol_version", "role", "stacktrace",
})
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SESSION_TIMEOUT = 3600


class Gateway(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold up a stop

    def __init__(self, address: tuple[str, int], data_dir: str, logins: dict[str, Login], open_logins: bool,
                 config_file: str | None = None) -> None:
        super().__init__(address, Handler)
        self.data_dir = data_dir
        self.logins = logins
        self.open_logins = open_logins  # no password given: any user and password are accepted
        # The engine shuts down when its last connection closes; this one keeps it up, and the
        # server configuration (backups' allowed path, the query log) is read when it starts.
        self.root = connect(f"file:{data_dir}?config-file={config_file}" if config_file else data_dir)
        self.version, self.timezone = self.root.query(
            "SELECT version(), timezone()", "TSV").bytes().decode().split()
        self.display_name = socket.gethostname()
        self.sessions: dict[str, Session] = {}
        self.sessions_lock = threading.Lock()
        self.running = 0
        self.idle = threading.Condition()

    def open(self, login: Login) -> Any:
        """A connection of `login`: its profile's settings set first, for the engine to enforce."""
        conn = connect(self.data_dir)
        if login.settings:
            try:
                conn.query("SET " + ", ".join(f"{k} = {quote_string(v)}" for k, v in login.settings.items()), "TSV")
            except Exception:
                conn.close()
                raise
        return conn

    @contextmanager
    def lease(self, login: Login, session_id: str, timeout: float, check: bool, close: bool) -> Iterator[Lease]:
        with self.idle:
            self.running += 1
        try:
            if not session_id:
                conn = self.open(login)
                try:
                    yield Lease(conn, None)
                finally:
                    conn.close()
                return
            session = self.acquire(login, session_id, timeout, check)
            lease = Lease(session.conn, session)
            try:
                yield lease
            finally:
                session.last_used = time.monotonic()
                if close or lease.broken:
                    with self.sessions_lock:
                        self.sessions.pop(session_id, None)
                    session.conn.close()
                session.lock.release()
        finally:
            with self.idle:
                self.running -= 1
                self.idle.notify_all()

    def acquire(self, login: Login, session_id: str, timeout: float, check: bool) -> Session:
        with self.sessions_lock:
            now = time.monotonic()
            for sid, old in list(self.sessions.items()):
                if now - old.last_used > old.timeout and old.lock.acquire(blocking=False):
                    del self.sessions[sid]
                    old.conn.close()
            session = self.sessions.get(session_id)
            if session is None:
                if check:
                    raise ClickHouseError(372, f"Session {session_id} not found", "SESSION_NOT_FOUND")
                session = self.sessions[session_id] = Session(self.open(login), user=login.name)
            if session.user != login.name:
                raise ClickHouseError(373, f"Session {session_id} belongs to a different user", "SESSION_IS_LOCKED")
            if not session.lock.acquire(blocking=False):
                raise ClickHouseError(
                    373, f"Session {session_id} is locked by a concurrent client", "SESSION_IS_LOCKED")
            session.timeout = timeout
            return session

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("connection from %s failed: %r", client_address[0], sys.exc_info()[1])

    def close(self, grace: float = 10.0) -> None:
        self.server_close()
        with self.idle:
            self.idle.wait_for(lambda: self.running == 0, grace)
        with self.sessions_lock:
            for session in self.sessions.values():
                session.conn.close()
            self.sessions.clear()
        self.root.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's connection pool expects
    disable_nagle_algorithm = True  # else each reply's body waits ~40 ms for the client's delayed ACK
    server: Gateway

    def do_GET(self) -> None:
        self.handle_request(b"")

    def do_POST(self) -> None:
        self.handle_request(self.read_body())

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return b"".join(chunks)

    def handle_request(self, body: bytes) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path == "/ping" or (url.path == "/" and self.command == "GET" and "query" not in params):
            self.reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        query_id = params.get("query_id") or self.headers.get("X-ClickHouse-Query-Id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id,
                   "X-ClickHouse-Server-Display-Name": self.server.display_name}
        keyword = ""
        try:
            login = self.authenticate(params)
            for name in ("compress", "decompress"):
                if params.get(name, "0") not in ("", "0"):
                    raise ClickHouseError(48, f"'{name}=1' (ClickHouse block compression) is not supported"
                                          " by the chDB stand-in", "NOT_IMPLEMENTED")
            if self.headers.get("Content-Type", "").startswith("multipart/form-data"):
                params.update(form_fields(self.headers["Content-Type"], body))
                body = b""
            # ClickHouse reads the query parameter and the body as one text, in that order.
            query = params.get("query", "")
            body = decompress(body, self.headers.get("Content-Encoding", ""))
            stmt = parse((query + "\n").encode() + body if query else body)
            keyword = stmt.keyword
            if not stmt.sql.strip() and stmt.data is None:
                raise ClickHouseError(62, "Empty query", "SYNTAX_ERROR")
            login.allow(stmt)
            outcome = self.execute(login, stmt, params)
        except ClickHouseError as exc:
            self.fail(exc, headers, keyword, started)
            return
        except Exception as exc:  # chDB raises plain RuntimeErrors carrying ClickHouse's text
            self.fail(ClickHouseError.from_chdb(exc), headers, keyword, started)
            return
        headers["X-ClickHouse-Timezone"] = outcome.timezone
        headers["X-ClickHouse-Summary"] = json.dumps(outcome.summary, separators=(",", ":"))
        if outcome.format:
            headers["X-ClickHouse-Format"] = outcome.format
            headers["Content-Type"] = content_type(outcome.format)
        else:
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        self.reply(200, outcome.body, headers)
        log.info("%s %s 200 %.1fms query_id=%s written_rows=%s", self.command, keyword or "-",
                 (time.monotonic() - started) * 1000, query_id, outcome.summary["written_rows"])

    def execute(self, login: Login, stmt: Statement, params: dict[str, str]) -> Outcome:
        session_id = params.get("session_id", "")
        raw_timeout = params.get("session_timeout", str(DEFAULT_SESSION_TIMEOUT))
        if not raw_timeout.isdigit():
            raise ClickHouseError(374, f"Invalid session timeout: '{raw_timeout}'", "INVALID_SESSION_TIMEOUT")
        if int(raw_timeout) > MAX_SESSION_TIMEOUT:
            raise ClickHouseError(374, f"Session timeout '{raw_timeout}' is larger than max_session_timeout:"
                                  f" {MAX_SESSION_TIMEOUT}", "INVALID_SESSION_TIMEOUT")
        settings = {k: v for k, v in params.items() if k not in RESERVED_PARAMS and not k.startswith("param_")}
        for name in settings:
            if not SETTING_NAME.fullmatch(name):
                raise ClickHouseError(115, f"Unknown setting '{name}'", "UNKNOWN_SETTING")
        fmt = params.get("default_format") or self.headers.get("X-ClickHouse-Format") or "TabSeparated"
        database = params.get("database") or self.headers.get("X-ClickHouse-Database")
        bound = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        with self.server.lease(login, session_id, int(raw_timeout), params.get("session_check") == "1",
                               params.get("close_session") == "1") as lease:
            return run(lease, stmt, fmt, bound, settings, database, self.server.timezone)

    def authenticate(self, params: dict[str, str]) -> Login:
        """ClickHouse's rules: X-ClickHouse-User/Key, or Basic auth, or user/password parameters."""
        user, key = self.headers.get("X-ClickHouse-User", ""), self.headers.get("X-ClickHouse-Key", "")
        authorization = self.headers.get("Authorization", "")
        if user or key:
            if authorization or "user" in params or "password" in params:
                raise ClickHouseError(516, "Invalid authentication: it is not allowed to use X-ClickHouse HTTP"
                                      " headers and other authentication methods simultaneously",
                                      "AUTHENTICATION_FAILED")
        elif authorization:
            if "user" in params or "password" in params:
                raise ClickHouseError(516, "Invalid authentication: it is not allowed to use Authorization HTTP"
                                      " header and authentication via parameters simultaneously",
                                      "AUTHENTICATION_FAILED")
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise ClickHouseError(516, f"Invalid authentication: '{scheme}' HTTP Authorization scheme is"
                                      " not supported", "AUTHENTICATION_FAILED")
            user, _, key = base64.b64decode(credentials).decode().partition(":")
        else:
            user, key = params.get("user", ""), params.get("password", "")
        user = user or "default"
        login = self.server.logins.get(user)
        if self.server.open_logins:
            return login or self.server.logins["default"]
        if login is None or not login.check_password(key):
            raise ClickHouseError(516, f"{user}: Authentication failed: password is incorrect, or there is no"
                                  " user with such name", "AUTHENTICATION_FAILED")
        return login

    def fail(self, exc: ClickHouseError, headers: dict[str, str], keyword: str, started: float) -> None:
        message = exc.message if exc.message.endswith(".") else exc.message + "."
        body = f"Code: {exc.code}. DB::Exception: {message} ({exc.name}) (version {self.server.version})\n"
        headers["X-ClickHouse-Exception-Code"] = str(exc.code)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        status = HTTP_STATUS.get(exc.name, 500)
        self.reply(status, body.encode(), headers)
        log.info("%s %s %d %.1fms query_id=%s code=%d", self.command, keyword or "-", status,
                 (time.monotonic() - started) * 1000, headers["X-ClickHouse-Query-Id"], exc.code)

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.warning("%s %s", self.address_string(), format % args)

