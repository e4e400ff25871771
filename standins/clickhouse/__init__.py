"""ClickHouse's HTTP interface in front of chDB, so clickhouse-connect works unchanged.

    python -m standins.clickhouse --host 127.0.0.1 --port PORT --data-dir DIR [--password-file FILE]

Behaves like a single-node ClickHouse server, with these deliberate differences:

- Request bodies and results are held in memory whole. Results are sent with a
  Content-Length and never compressed: `Accept-Encoding` and `enable_http_compression`
  are accepted and ignored, which HTTP allows and clickhouse-connect handles. Request
  bodies may be compressed (`Content-Encoding`: gzip, deflate, zstd, lz4 frames;
  clickhouse-connect compresses inserts with lz4 by default). ClickHouse's own block
  compression (`compress=1`, `decompress=1`) and external data answer NOT_IMPLEMENTED.
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
- GET requests are not made read-only. Without a password file any user and password are
  accepted; with one, `default` and the users of `--users-file` (their settings profile enforced
  by the engine, their allowed statements by the gateway: users.py). Multipart form fields
  (`query`, `param_*`) are read as ClickHouse reads them; file parts (external data) are not.
"""
