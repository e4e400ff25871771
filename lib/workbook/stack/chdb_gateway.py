"""ClickHouse's HTTP interface in front of chDB, so clickhouse-connect works unchanged.

    python -m workbook.stack.chdb_gateway --host 127.0.0.1 --port PORT --data-dir DIR
        [--password-file FILE]

Behaves like a single-node ClickHouse server, with these deliberate differences:

- Request bodies and results are held in memory whole. Results are sent with a
  Content-Length and never compressed: `Accept-Encoding` and `enable_http_compression`
  are accepted and ignored, which HTTP allows and clickhouse-connect handles. Request
  bodies may be compressed (`Content-Encoding`: gzip, deflate, zstd, lz4 frames;
  clickhouse-connect compresses inserts with lz4 by default). ClickHouse's own block
  compression (`compress=1`, `decompress=1`) and multipart requests (external data)
  answer NOT_IMPLEMENTED.
- `client_protocol_version` is ignored, so clickhouse-connect's probe sees plain Native
  and it stays on protocol version 0, which it supports in full.
- `param_<name>` values go to chDB's own query parameters, which binds `{name:Type}`
  placeholders as the server does; nothing is spliced into the SQL. An INSERT with
  inline rows (`FORMAT X` or `VALUES`) goes to chDB's `send_insert`, which takes no
  parameters, so its statement must not contain placeholders.
- Settings in the URL are applied with `SET` and put back after the statement, because a
  chDB connection has no per-query settings. `SET` and `USE` statements run as sent, so
  their effect stays with the session, as in ClickHouse. A session whose settings cannot
  be put back (`readonly` in the URL) is closed after the request.
- A session (`session_id`) is one chDB connection, closed after `session_timeout`
  seconds idle (default 60) or on `close_session=1`. A request without a session gets a
  connection of its own. chDB runs connections in parallel, so no global lock is needed;
  each session's connection serves one request at a time, and a second concurrent
  request for it fails with SESSION_IS_LOCKED, as in ClickHouse.
- GET requests are not made read-only. Users other than `default` exist only when no
  password file is given; then any user and password are accepted.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hmac
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb  # noqa: F401  (the package import loads the engine that _chdb binds to)
from chdb import _chdb

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

try:
    import lz4.frame as lz4_frame
except ImportError:  # clickhouse-connect sends lz4 only when it has lz4 itself
    lz4_frame = None

log = logging.getLogger("chdb_gateway")

# URL parameters that the HTTP layer consumes; every other one is a setting.
RESERVED_PARAMS = frozenset({
    "query", "database", "default_format", "user", "password", "quota_key", "query_id", "session_id",
    "session_timeout", "session_check", "close_session", "compress", "decompress", "buffer_size",
    "wait_end_of_query", "client_protocol_version", "role", "stacktrace",
})
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_SESSION_TIMEOUT = 60
MAX_SESSION_TIMEOUT = 3600

# ClickHouse's exceptionCodeToHTTPStatus, keyed by error name since chDB's messages carry it.
HTTP_STATUS = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "ACCESS_DENIED"), 403),
    **dict.fromkeys((
        "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE", "CANNOT_PARSE_QUOTED_STRING",
        "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE",
        "TOO_DEEP_AST", "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA",
        "TYPE_MISMATCH"), 400),
    **dict.fromkeys((
        "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING",
        "UNKNOWN_AGGREGATE_FUNCTION", "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE",
        "UNKNOWN_TYPE_OF_QUERY"), 404),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "TIMEOUT_EXCEEDED": 408,
}
# Statements whose result ClickHouse sends with an X-ClickHouse-Format header even when empty.
RESULT_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK"})
BINARY_FORMATS = ("native", "rowbinary", "arrow", "parquet", "orc", "avro", "protobuf", "capnproto",
                  "msgpack", "npy", "bson")


class ClickHouseError(Exception):
    def __init__(self, code: int, message: str, name: str) -> None:
        super().__init__(message)
        self.code, self.message, self.name = code, message, name

    @classmethod
    def from_chdb(cls, exc: Exception) -> ClickHouseError:
        """Unwrap chDB's text, which may nest `Code: N. DB::Exception:` several times."""
        text = str(exc)
        starts = list(re.finditer(r"Code: (\d+)\. DB::Exception: ", text))
        if not starts:
            return cls(1001, text, "STD_EXCEPTION")
        rest = text[starts[-1].end():]
        tail = re.fullmatch(
            r"(.*?)\.? \(([A-Z0-9_]+)\)(?: \(version [^)]*\))?(?:\. \(\2\)(?: \(version [^)]*\))?)*\s*",
            rest, re.S)
        if tail is None:
            return cls(int(starts[-1].group(1)), rest.strip(), "UNKNOWN_EXCEPTION")
        return cls(int(starts[-1].group(1)), tail.group(1), tail.group(2))


# One lexer token. Spaces and comments are skipped; anything but a word breaks a `FORMAT name`.
TOKEN = re.compile(rb"""
    (?P<space>\s+|--[^\n]*|\#[^\n]*|/\*.*?\*/)
  | '(?:[^'\\]|\\.|'')*' | "(?:[^"\\]|\\.|"")*" | `(?:[^`\\]|\\.|``)*`
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<bracket>[][()])
  | .
""", re.X | re.S)
AFTER_OUTPUT_FORMAT = re.compile(rb"\s*(?:;\s*)?$|\s+SETTINGS\b", re.I)
INSERT_DATA_START = re.compile(rb"[ \t\f]*\r?\n?")


@dataclass
class Statement:
    sql: bytes
    keyword: str = ""  # the first word, upper-cased
    format: str | None = None  # the FORMAT clause: output for queries, input for inserts
    data: bytes | None = None  # an INSERT's inline rows, `sql` then stops before FORMAT/VALUES


def parse(sql: bytes) -> Statement:
    """Split what ClickHouse splits: the FORMAT clause, and an INSERT's rows from its statement.

    Only top-level words count, so names in brackets or quotes are never taken for clauses.
    An INSERT ... SELECT keeps any FORMAT for its SELECT and carries no inline rows.
    """
    stmt = Statement(sql)
    depth, previous, format_start = 0, b"", 0
    for token in TOKEN.finditer(sql):
        if token.group("space"):
            continue
        word = token.group("word")
        if word is not None and not stmt.keyword:
            stmt.keyword = word.upper().decode()
        if token.group("bracket"):
            depth += 1 if token.group("bracket") in b"([" else -1
        if word is None or depth:
            previous = b""
            continue
        upper = word.upper()
        inserting = stmt.keyword == "INSERT"
        if previous == b"FORMAT":
            if inserting:
                rows = INSERT_DATA_START.match(sql, token.end())
                assert rows is not None  # the pattern matches anywhere, if only the empty string
                return Statement(sql[:format_start], stmt.keyword, word.decode(), sql[rows.end():])
            if AFTER_OUTPUT_FORMAT.match(sql, token.end()):
                stmt.format = word.decode()
        elif inserting and upper == b"VALUES":  # stopping here also spares lexing every row
            return Statement(sql[:token.start()], stmt.keyword, "Values", sql[token.end():])
        elif inserting and upper in (b"SELECT", b"WITH"):
            return stmt
        previous, format_start = upper, token.start()
    return stmt


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


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd":
        return zstd.decompress(body)
    if encoding == "lz4" and lz4_frame is not None:
        # clickhouse-connect sends one lz4 frame per block; the decompressor stops after each.
        parts = []
        while body:
            frame = lz4_frame.LZ4FrameDecompressor()
            parts.append(frame.decompress(body))
            body = frame.unused_data
        return b"".join(parts)
    raise ClickHouseError(36, f"Unknown HTTP Content-Encoding: {encoding}", "BAD_ARGUMENTS")


def content_type(fmt: str) -> str:
    lower = fmt.lower()
    if lower.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lower.startswith("csv"):
        return f"text/csv; charset=UTF-8; header={'present' if 'withnames' in lower else 'absent'}"
    if lower.startswith("json"):
        return "application/json; charset=UTF-8"
    if lower.startswith(BINARY_FORMATS):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


class Gateway(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold up a stop

    def __init__(self, address: tuple[str, int], data_dir: str, password: str | None) -> None:
        super().__init__(address, Handler)
        self.data_dir = data_dir
        self.password = password
        # The engine shuts down when its last connection closes; this one keeps it up.
        self.root = connect(data_dir)
        self.version, self.timezone = self.root.query(
            "SELECT version(), timezone()", "TSV").bytes().decode().split()
        self.display_name = socket.gethostname()
        self.sessions: dict[str, Session] = {}
        self.sessions_lock = threading.Lock()
        self.running = 0
        self.idle = threading.Condition()

    @contextmanager
    def lease(self, session_id: str, timeout: float, check: bool, close: bool) -> Iterator[Lease]:
        with self.idle:
            self.running += 1
        try:
            if not session_id:
                conn = connect(self.data_dir)
                try:
                    yield Lease(conn, None)
                finally:
                    conn.close()
                return
            session = self.acquire(session_id, timeout, check)
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

    def acquire(self, session_id: str, timeout: float, check: bool) -> Session:
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
                session = self.sessions[session_id] = Session(connect(self.data_dir))
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
            self.authenticate(params)
            for name in ("compress", "decompress"):
                if params.get(name, "0") not in ("", "0"):
                    raise ClickHouseError(48, f"'{name}=1' (ClickHouse block compression) is not supported"
                                          " by chdb_gateway", "NOT_IMPLEMENTED")
            if self.headers.get("Content-Type", "").startswith("multipart/"):
                raise ClickHouseError(48, "multipart requests (external data) are not supported by"
                                      " chdb_gateway", "NOT_IMPLEMENTED")
            # ClickHouse reads the query parameter and the body as one text, in that order.
            query = params.get("query", "")
            body = decompress(body, self.headers.get("Content-Encoding", ""))
            stmt = parse((query + "\n").encode() + body if query else body)
            keyword = stmt.keyword
            if not stmt.sql.strip() and stmt.data is None:
                raise ClickHouseError(62, "Empty query", "SYNTAX_ERROR")
            outcome = self.execute(stmt, params)
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

    def execute(self, stmt: Statement, params: dict[str, str]) -> Outcome:
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
        with self.server.lease(session_id, int(raw_timeout), params.get("session_check") == "1",
                               params.get("close_session") == "1") as lease:
            return run(lease, stmt, fmt, bound, settings, database, self.server.timezone)

    def authenticate(self, params: dict[str, str]) -> None:
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
        expected = self.server.password
        if expected is not None and not (user == "default" and hmac.compare_digest(key.encode(), expected.encode())):
            raise ClickHouseError(516, f"{user}: Authentication failed: password is incorrect, or there is no"
                                  " user with such name", "AUTHENTICATION_FAILED")

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--password-file", help="file holding the password of user 'default'")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    password = None
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n")
    gateway = Gateway((args.host, args.port), args.data_dir, password)
    # shutdown() waits for serve_forever() to return, so it runs on a thread of its own. The
    # signal may land on one of chDB's threads; serve_forever's poll still runs the handler.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=gateway.shutdown).start())
    log.info("ClickHouse %s (chDB) on http://%s:%d, data in %s", gateway.version, args.host, args.port,
             args.data_dir)
    gateway.serve_forever(poll_interval=0.2)
    log.info("stopping")
    gateway.close()


if __name__ == "__main__":
    main()
