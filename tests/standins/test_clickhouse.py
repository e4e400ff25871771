"""The ClickHouse stand-in (chDB behind ClickHouse's HTTP interface) as clickhouse-connect sees it:
a real subprocess on a real port."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from workbook.stack.manager import free_port

START_TIMEOUT_S = 30.0


@dataclass
class Gateway:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, **kwargs: Any) -> Client:
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, **kwargs)

    def http(self, params: dict[str, str] | None = None, body: bytes | None = None, path: str = "/",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One raw request; returns status, headers and body whatever the status."""
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


@contextmanager
def running_gateway(data_dir: Path, log: Path, *extra: str) -> Iterator[Gateway]:
    port = free_port()
    with open(log, "ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "standins.clickhouse", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data_dir), *extra],
            stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"gateway exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                    if r.read() == b"Ok.\n":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gateway did not answer /ping within {START_TIMEOUT_S}s:\n{log.read_text()}")
            time.sleep(0.05)
        yield Gateway(port, proc, log)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("clickhouse_standin")
    with running_gateway(root / "data", root / "gateway.log") as gw:
        yield gw


@pytest.fixture
def client(gateway: Gateway) -> Iterator[Client]:
    c = gateway.client()
    yield c
    c.close()


@pytest.fixture
def table(client: Client) -> Iterator[str]:
    """A unique table name, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    client.command(f"DROP TABLE IF EXISTS {name}")


TYPED_COLUMNS = ("id UInt32, ts DateTime, note Nullable(String), tags Array(String), "
                 "kind LowCardinality(String), price Decimal(10, 2), uid UUID")
TYPED_ROWS = [
    [1, dt.datetime(2024, 1, 2, 3, 4, 5), None, ["a", "b"], "x", decimal.Decimal("1.25"), uuid.UUID(int=1)],
    [2, dt.datetime(2024, 5, 6, 7, 8, 9), "it's \"quoted\"\tand\ttabbed", [], "y", decimal.Decimal("-3.50"),
     uuid.UUID(int=2)],
]


def create_typed(client: Client, table: str) -> None:
    client.command(f"CREATE TABLE {table} ({TYPED_COLUMNS}) ENGINE = MergeTree ORDER BY id")


def test_ping_and_root_answer_ok(gateway: Gateway) -> None:
    assert gateway.http(path="/ping")[::2] == (200, b"Ok.\n")
    assert gateway.http(path="/")[::2] == (200, b"Ok.\n")


def test_client_connects_and_reads_server_identity(gateway: Gateway, client: Client) -> None:
    assert client.ping()
    version = client.command("SELECT version()")
    assert isinstance(version, str) and version.count(".") == 3
    assert client.server_version == version
    # What clickhouse-connect reads at connect, through the Native format.
    settings = client.query("SELECT name, value, readonly FROM system.settings LIMIT 10000").result_rows
    assert ("max_result_rows", "0", 0) in settings


def test_response_headers_follow_clickhouse(gateway: Gateway) -> None:
    status, headers, body = gateway.http({"query": "SELECT 1 AS x", "query_id": "q-42"})
    assert (status, body) == (200, b"1\n")
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["X-ClickHouse-Query-Id"] == "q-42"
    assert headers["X-ClickHouse-Timezone"] == gateway.http({"query": "SELECT timezone()"})[2].decode().strip()
    assert headers["X-ClickHouse-Server-Display-Name"]
    assert headers["Content-Type"].startswith("text/tab-separated-values")
    assert json.loads(headers["X-ClickHouse-Summary"])["read_rows"] == "1"
    _, headers, _ = gateway.http({"query": "SELECT 1", "session_timezone": "Asia/Tokyo"})
    assert headers["X-ClickHouse-Timezone"] == "Asia/Tokyo"
    status, headers, body = gateway.http({"query": "SELECT 1 AS x", "default_format": "JSONEachRow"})
    assert (headers["X-ClickHouse-Format"], body) == ("JSONEachRow", b'{"x":1}\n')
    status, headers, body = gateway.http({"query": "SELECT 1 AS x FORMAT CSVWithNames",
                                          "default_format": "JSONEachRow"})
    assert (headers["X-ClickHouse-Format"], body) == ("CSVWithNames", b'"x"\n1\n')
    # A statement without a result set gets no format header (clickhouse-connect tells them apart by it).
    status, headers, _ = gateway.http({"query": "CREATE TEMPORARY TABLE gone_with_the_request (a Int8)"})
    assert status == 200 and "X-ClickHouse-Format" not in headers


def test_typed_insert_and_query(client: Client, table: str) -> None:
    create_typed(client, table)
    summary = client.insert(table, TYPED_ROWS)
    assert summary.written_rows == 2
    result = client.query(f"SELECT * FROM {table} ORDER BY id")
    assert result.column_names == ("id", "ts", "note", "tags", "kind", "price", "uid")
    assert [t.name for t in result.column_types] == [
        "UInt32", "DateTime", "Nullable(String)", "Array(String)", "LowCardinality(String)", "Decimal(10, 2)",
        "UUID"]
    assert [list(row) for row in result.result_rows] == TYPED_ROWS
    # clickhouse-connect answers LIMIT 0 from a FORMAT JSON probe of the column metadata.
    empty = client.query(f"SELECT * FROM {table} LIMIT 0")
    assert (empty.column_names, empty.column_types, empty.result_rows) == (
        result.column_names, result.column_types, [])


@pytest.mark.parametrize("compress", [False, "lz4", "zstd", "gzip"])
def test_insert_with_each_body_compression(gateway: Gateway, table: str, compress: object) -> None:
    c = gateway.client(compress=compress)
    try:
        c.command(f"CREATE TABLE {table} (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
        c.insert(table, [[i, f"row {i}" * 10] for i in range(5000)])
        assert c.command(f"SELECT count(), sum(n) FROM {table}") == ["5000", str(sum(range(5000)))]
    finally:
        c.close()


def test_pandas_round_trip(client: Client, table: str) -> None:
    client.command(f"CREATE TABLE {table} (id Int64, name String, score Float64, at DateTime64(3)) "
                   "ENGINE = MergeTree ORDER BY id")
    at = pd.to_datetime(["2024-01-01 00:00:00.123", "2024-01-02 00:00:00.000", "2024-01-03 00:00:00.000"])
    frame = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"], "score": [0.5, 1.5, 2.5], "at": at})
    client.insert_df(table, frame)
    back = client.query_df(f"SELECT * FROM {table} ORDER BY id")
    assert back["id"].tolist() == [1, 2, 3]
    assert back["name"].tolist() == ["a", "b", "c"]
    assert back["score"].tolist() == [0.5, 1.5, 2.5]
    assert back["at"].iloc[0] == pd.Timestamp("2024-01-01 00:00:00.123")


def test_arrow_round_trip(client: Client, table: str) -> None:
    client.command(f"CREATE TABLE {table} (id Int64, name String, vals Array(Float64)) "
                   "ENGINE = MergeTree ORDER BY id")
    data = pa.table({"id": pa.array([3, 1, 2], pa.int64()), "name": ["c", "a", "b"],
                     "vals": [[1.0], [], [2.0, 3.0]]})
    client.insert_arrow(table, data)
    back = client.query_arrow(f"SELECT * FROM {table} ORDER BY id")
    assert back.column_names == ["id", "name", "vals"]
    assert back.column("id").to_pylist() == [1, 2, 3]
    assert back.column("name").to_pylist() == ["a", "b", "c"]
    assert back.column("vals").to_pylist() == [[], [2.0, 3.0], [1.0]]


def test_raw_query_csv_and_json_each_row(client: Client) -> None:
    sql = "SELECT number AS n, toString(number) AS s FROM numbers(2)"
    assert client.raw_query(sql, fmt="CSV") == b'0,"0"\n1,"1"\n'
    rows = [json.loads(line) for line in client.raw_query(sql, fmt="JSONEachRow").splitlines()]
    assert rows == [{"n": 0, "s": "0"}, {"n": 1, "s": "1"}]


OUTPUT_SQL = "SELECT number AS n, concat('v', toString(number)) AS s FROM numbers(3)"


@pytest.mark.parametrize("fmt, check", [
    ("Native", lambda b: b.startswith(b"\x02\x03\x01n\x06UInt64")),
    ("RowBinaryWithNamesAndTypes", lambda b: b.startswith(b"\x02\x01n\x01s\x06UInt64\x06String")),
    ("Arrow", lambda b: pa.ipc.open_file(b).read_all().column("s").to_pylist() == ["v0", "v1", "v2"]),
    ("ArrowStream", lambda b: pa.ipc.open_stream(b).read_all().column("n").to_pylist() == [0, 1, 2]),
    ("Parquet", lambda b: pq.read_table(io.BytesIO(b)).column("s").to_pylist() == ["v0", "v1", "v2"]),
    ("JSON", lambda b: json.loads(b)["data"][2] == {"n": 2, "s": "v2"}),
    ("JSONEachRow", lambda b: json.loads(b.splitlines()[1]) == {"n": 1, "s": "v1"}),
    ("CSV", lambda b: b == b'0,"v0"\n1,"v1"\n2,"v2"\n'),
    ("TSV", lambda b: b == b"0\tv0\n1\tv1\n2\tv2\n"),
    ("TabSeparated", lambda b: b == b"0\tv0\n1\tv1\n2\tv2\n"),
])
def test_output_formats(gateway: Gateway, fmt: str, check: Callable[[bytes], bool]) -> None:
    status, headers, body = gateway.http(body=f"{OUTPUT_SQL} FORMAT {fmt}".encode())
    assert status == 200, body
    assert headers["X-ClickHouse-Format"] == fmt
    assert check(body)


def test_raw_insert_csv(client: Client, table: str) -> None:
    client.command(f"CREATE TABLE {table} (id UInt32, name String, at DateTime) ENGINE = MergeTree ORDER BY id")
    client.raw_insert(table, ["id", "name", "at"], '1,"a,b",2024-01-01 00:00:00\n2,c,2024-01-02 10:00:00\n',
                      fmt="CSV")
    assert client.query(f"SELECT id, name, at FROM {table} ORDER BY id").result_rows == [
        (1, "a,b", dt.datetime(2024, 1, 1)), (2, "c", dt.datetime(2024, 1, 2, 10))]


def test_inserts_in_each_input_format(gateway: Gateway, client: Client, table: str) -> None:
    client.command(f"CREATE TABLE {table} (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
    arrow = io.BytesIO()
    with pa.ipc.new_file(arrow, pa.schema([("id", pa.uint32()), ("name", pa.string())])) as writer:
        writer.write_table(pa.table({"id": pa.array([5], pa.uint32()), "name": ["arrow"]}))
    bodies = {
        "TSV": b"1\ttsv\n",
        "JSONEachRow": b'{"id": 2, "name": "json"}\n',
        "RowBinary": b"\x03\x00\x00\x00" + b"\x09rowbinary",
        "CSV": b'4,"csv"\n',
        "Arrow": arrow.getvalue(),
    }
    for fmt, body in bodies.items():
        # The statement in the URL and the rows in the body, as clickhouse-connect sends compressed data.
        status, _, reply = gateway.http({"query": f"INSERT INTO {table} (id, name) FORMAT {fmt}"}, body)
        assert status == 200, (fmt, reply)
    # Statement and rows together in the body, as clickhouse-connect sends uncompressed data.
    status, _, reply = gateway.http(body=f"INSERT INTO {table} FORMAT CSV\n6,both\n".encode())
    assert status == 200, reply
    status, _, reply = gateway.http(body=f"INSERT INTO {table} VALUES (7, 'values'), (8, 'a''b')".encode())
    assert status == 200, reply
    assert client.query(f"SELECT id, name FROM {table} ORDER BY id").result_rows == [
        (1, "tsv"), (2, "json"), (3, "rowbinary"), (4, "csv"), (5, "arrow"), (6, "both"), (7, "values"),
        (8, "a'b")]


def test_large_inserts_in_the_body(gateway: Gateway, client: Client, table: str) -> None:
    """Rows past max_query_size (256 KiB) must still all arrive."""
    client.command(f"CREATE TABLE {table} (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
    values = ", ".join(f"({i}, 'name number {i}')" for i in range(30000))
    status, _, reply = gateway.http(body=f"INSERT INTO {table} VALUES {values}".encode())
    assert status == 200, reply
    csv = "".join(f"{i},text {i}\n" for i in range(30000, 60000))
    status, _, reply = gateway.http(body=f"INSERT INTO {table} FORMAT CSV\n{csv}".encode())
    assert status == 200, reply
    assert client.command(f"SELECT count(), uniqExact(id) FROM {table}") == ["60000", "60000"]


def test_bad_insert_data_is_a_clickhouse_error(client: Client, table: str) -> None:
    client.command(f"CREATE TABLE {table} (id UInt32) ENGINE = MergeTree ORDER BY id")
    with pytest.raises(DatabaseError, match=r"(?s)Code: 117\. DB::Exception: .*While executing CSVRowInputFormat"):
        client.raw_insert(table, ["id"], "1\nnot a number\n", fmt="CSV")
    assert client.command(f"SELECT count() FROM {table}") == 0


def test_server_side_parameters(client: Client) -> None:
    assert client.query("SELECT {x:UInt32} + 1 AS y", parameters={"x": 5}).result_rows == [(6,)]
    tricky = "it's a \\ back\tslash\nand quote'"
    result = client.query(
        "SELECT {s:String} AS s, {a:Array(String)} AS a, {t:DateTime} AS t, {n:Nullable(Int32)} AS n",
        parameters={"s": tricky, "a": ["x'y", "z"], "t": dt.datetime(2024, 3, 4, 5, 6, 7), "n": None})
    assert result.result_rows == [(tricky, ["x'y", "z"], dt.datetime(2024, 3, 4, 5, 6, 7), None)]
    # The placeholder is bound, never spliced: this is a string, not SQL.
    injected = "1'); DROP TABLE x; --"
    assert client.query("SELECT {s:String}", parameters={"s": injected}).result_rows == [(injected,)]


def test_settings_apply_to_one_query_only(client: Client) -> None:
    settings = {"max_result_rows": 1, "result_overflow_mode": "throw"}
    with pytest.raises(DatabaseError, match=r"Code: 396\..*TOO_MANY_ROWS_OR_BYTES"):
        client.query("SELECT number FROM numbers(10)", settings=settings)
    assert client.query("SELECT number FROM numbers(1)", settings=settings).result_rows == [(0,)]
    assert len(client.query("SELECT number FROM numbers(10)").result_rows) == 10
    assert client.command("SELECT getSetting('max_result_rows')") == 0


def test_unknown_setting_is_rejected(gateway: Gateway) -> None:
    status, headers, body = gateway.http({"query": "SELECT 1", "no_such_setting": "1"})
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "115", body
    assert b"UNKNOWN_SETTING" in body


def test_database_argument_and_header(gateway: Gateway, client: Client) -> None:
    db = f"db_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE DATABASE {db}")
    try:
        client.command(f"CREATE TABLE {db}.inside (a UInt8) ENGINE = MergeTree ORDER BY a")
        scoped = gateway.client(database=db)
        try:
            scoped.insert("inside", [[7]])
            assert scoped.command("SELECT currentDatabase()") == db
            assert scoped.query("SELECT a FROM inside").result_rows == [(7,)]
        finally:
            scoped.close()
        assert client.command("SELECT currentDatabase()") == "default"
        status, _, body = gateway.http({"query": "SELECT a FROM inside"}, headers={"X-ClickHouse-Database": db})
        assert (status, body) == (200, b"7\n")
        status, _, body = gateway.http({"query": "SELECT 1", "database": "no_such_db"})
        assert status == 404 and b"Code: 81." in body
    finally:
        client.command(f"DROP DATABASE IF EXISTS {db}")


def test_session_keeps_settings_and_database(gateway: Gateway) -> None:
    first, second = gateway.client(), gateway.client()
    try:
        first.command("SET max_block_size = 1234")
        first.command("USE system")
        assert first.command("SELECT getSetting('max_block_size')") == 1234
        assert first.command("SELECT currentDatabase()") == "system"
        # A per-query setting on top of the session's does not replace it.
        assert first.command("SELECT getSetting('max_block_size')", settings={"max_block_size": 99}) == 99
        assert first.command("SELECT getSetting('max_block_size')") == 1234
        assert second.command("SELECT getSetting('max_block_size')") != 1234
        assert second.command("SELECT currentDatabase()") == "default"
        # A later SET wins over what an earlier request with the same override saw.
        first.command("SELECT 1", settings={"max_block_size": 99})
        first.command("SET max_block_size = 2000")
        assert first.command("SELECT getSetting('max_block_size')", settings={"max_block_size": 99}) == 99
        assert first.command("SELECT getSetting('max_block_size')") == 2000
    finally:
        first.close()
        second.close()


def test_requests_without_session_share_nothing(gateway: Gateway) -> None:
    c = gateway.client(autogenerate_session_id=False)
    try:
        c.command("SET max_block_size = 4321")
        assert c.command("SELECT getSetting('max_block_size')") != 4321
    finally:
        c.close()


def test_concurrent_use_of_one_session_is_refused(gateway: Gateway) -> None:
    session = {"session_id": f"s-{uuid.uuid4()}"}
    replies: list[tuple[int, dict[str, str], bytes]] = []
    slow = threading.Thread(target=lambda: replies.append(gateway.http({**session, "query": "SELECT sleep(2)"})))
    slow.start()
    while slow.is_alive():  # whichever request comes second is refused
        replies.append(gateway.http({**session, "query": "SELECT 1"}))
        time.sleep(0.05)
    slow.join()
    refused = [(status, h.get("X-ClickHouse-Exception-Code"), body) for status, h, body in replies if status != 200]
    assert refused and all(r[:2] == (500, "373") and b"SESSION_IS_LOCKED" in r[2] for r in refused), replies
    assert gateway.http({**session, "query": "SELECT 1"})[::2] == (200, b"1\n")
    status, _, body = gateway.http({"session_id": f"s-{uuid.uuid4()}", "session_check": "1", "query": "SELECT 1"})
    assert status == 500 and b"Code: 372." in body


def test_errors_raise_database_error_with_clickhouse_text(gateway: Gateway, client: Client) -> None:
    with pytest.raises(DatabaseError, match=r"Code: 60\. DB::Exception: .*no_such_table.*\(UNKNOWN_TABLE\)"):
        client.query("SELECT * FROM no_such_table")
    status, headers, body = gateway.http({"query": "SELECT * FROM no_such_table"})
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception: ") and body.rstrip().endswith(b")")
    assert b"(version " in body
    status, headers, body = gateway.http({"query": "SELEC 1"})
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "62"
    status, headers, body = gateway.http({"query": "SELECT 1; SELECT 2"})
    assert status == 400 and b"Multi-statements are not allowed" in body
    with pytest.raises(DatabaseError, match=r"Code: 395\."):
        client.command("SELECT throwIf(1)")


def test_twenty_concurrent_clients(gateway: Gateway, client: Client, table: str) -> None:
    client.command(f"CREATE TABLE {table} (worker UInt32, n UInt32) ENGINE = MergeTree ORDER BY (worker, n)")

    def work(worker: int) -> int:
        # Half use sessions, half send none and so get a new chDB connection per request.
        c = gateway.client(autogenerate_session_id=worker % 2 == 0)
        try:
            for batch in range(5):
                c.insert(table, [[worker, batch * 100 + i] for i in range(100)])
                c.query(f"SELECT count() FROM {table}")
            return int(str(c.command(f"SELECT count() FROM {table} WHERE worker = {worker}")))
        finally:
            c.close()

    with ThreadPoolExecutor(20) as pool:
        counts = list(pool.map(work, range(20), timeout=120))
    assert counts == [500] * 20
    assert client.command(f"SELECT count(), uniqExact(worker, n) FROM {table}") == ["10000", "10000"]


def test_data_survives_restart(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "gateway.log"
    with running_gateway(data, log) as gw:
        c = gw.client()
        c.command("CREATE TABLE kept (id UInt32, s String) ENGINE = MergeTree ORDER BY id")
        c.insert("kept", [[1, "one"], [2, "two"]])
        c.close()
        assert stop(gw.proc) == 0  # SIGTERM stops it cleanly
    with running_gateway(data, log) as gw:
        c = gw.client()
        try:
            assert c.query("SELECT id, s FROM kept ORDER BY id").result_rows == [(1, "one"), (2, "two")]
        finally:
            c.command("DROP TABLE kept")
            c.close()


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    with running_gateway(tmp_path / "data", tmp_path / "gateway.log", "--password-file", str(secret)) as gw:
        good = gw.client(username="default", password="s3cret")
        assert good.command("SELECT 1") == 1
        good.close()
        with pytest.raises(DatabaseError, match=r"Code: 516\. DB::Exception: default: Authentication failed"):
            gw.client(username="default", password="wrong")
        with pytest.raises(DatabaseError, match="516"):
            gw.client(username="someone", password="s3cret")
        status, headers, body = gw.http({"query": "SELECT 1"})
        assert status == 403 and headers["X-ClickHouse-Exception-Code"] == "516", body
        assert gw.http({"query": "SELECT 1", "user": "default", "password": "s3cret"})[::2] == (200, b"1\n")
        by_header = {"X-ClickHouse-User": "default", "X-ClickHouse-Key": "s3cret"}
        assert gw.http({"query": "SELECT 1"}, headers=by_header)[::2] == (200, b"1\n")
        basic = {"Authorization": "Basic " + base64.b64encode(b"default:s3cret").decode()}
        assert gw.http({"query": "SELECT 1"}, headers=basic)[::2] == (200, b"1\n")
        assert gw.http(path="/ping")[::2] == (200, b"Ok.\n")  # as in ClickHouse, /ping needs no login
