"""The platform's ClickHouse schema, as numbered migrations the admin login applies at startup.

Applied versions are rows of `platform_schema_migrations`; each migration is written so that
running it again after a crash half-way finishes it instead of failing. Two backend instances
starting together take a PostgreSQL advisory lock around `migrate` (app.backend.app).

Tables, and why they look the way they do:

- `workload_events`: a user's workload, ingested through `POST /api/events/batch`. Partitioned
  by month, so retention drops whole months; ordered by (user_id, ts, event_id), so every query
  (always one user, usually a time range) reads only that user's granules. Idempotency per
  event id: the table is a ReplacingMergeTree keyed by that order, so a retried event is one
  row after a merge, and every analytics query reads it `FINAL`, so it is one row before the
  merge too. A TTL drops events older than `workload_retention_days`. The columns the first
  schema lacked (event_id, cost_usd, status, ingested_at) are MATERIALIZED with their defaults,
  so writers of the first schema (a positional `INSERT ... SELECT` of its 8 columns) keep
  working; the platform inserts them explicitly (`insert_allow_materialized_columns`) and
  names them when it reads (`SELECT *` does not show them).
- `usage_events`: what every model call of an agent run cost: the bill. No TTL.
- `corpus`: a user's content entries, ordered by owner; an n-gram bloom filter on the lower-cased
  title and content lets a substring search skip granules that cannot match.
- On a server, the writer and reader users with their grants (`clickhouse_manage_users`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable

from app.common.clickhouse import ClickHouse

log = logging.getLogger("app.clickhouse")

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS platform_schema_migrations (
    version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY version"""

WORKLOAD_COLUMNS = ["user_id", "ts", "workload", "model", "requests", "prompt_tokens", "completion_tokens",
                    "latency_ms", "event_id", "cost_usd", "status", "ingested_at"]
WORKLOAD_TYPES = ["String", "DateTime64(3, 'UTC')", "LowCardinality(String)", "LowCardinality(String)", "UInt32",
                  "UInt64", "UInt64", "Float64", "String", "Decimal(18, 9)", "LowCardinality(String)",
                  "DateTime64(3, 'UTC')"]


def workload_ttl(days: int) -> str:
    return f"toDateTime(ts) + toIntervalDay({int(days)})"


def _workload_table(name: str, days: int) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {name} (
        user_id String, ts DateTime64(3, 'UTC'), workload LowCardinality(String), model LowCardinality(String),
        requests UInt32, prompt_tokens UInt64, completion_tokens UInt64, latency_ms Float64,
        event_id String MATERIALIZED toString(generateUUIDv4()),
        cost_usd Decimal(18, 9) MATERIALIZED 0,
        status LowCardinality(String) MATERIALIZED 'ok',
        ingested_at DateTime64(3, 'UTC') MATERIALIZED now64(3),
        INDEX event_ids event_id TYPE bloom_filter(0.01) GRANULARITY 1
    ) ENGINE = ReplacingMergeTree(ingested_at) PARTITION BY toYYYYMM(ts) ORDER BY (user_id, ts, event_id)
    TTL {workload_ttl(days)}"""


async def _initial(ch: ClickHouse) -> None:
    for statement in (
        """CREATE TABLE IF NOT EXISTS workload_events (
            user_id String, ts DateTime, workload LowCardinality(String), model LowCardinality(String),
            requests UInt32, prompt_tokens UInt64, completion_tokens UInt64, latency_ms Float64
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (user_id, ts) TTL ts + INTERVAL 13 MONTH""",
        """CREATE TABLE IF NOT EXISTS usage_events (
            run_id String, seq UInt32, user_id String, agent LowCardinality(String), model LowCardinality(String),
            prompt_tokens UInt64, completion_tokens UInt64, cost_usd Float64, ts DateTime64(3)
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (user_id, ts, run_id, seq)""",
        """CREATE TABLE IF NOT EXISTS corpus (
            entry_id String, owner_id String, title String, content String, tags Array(String),
            created_at DateTime64(3)
        ) ENGINE = MergeTree ORDER BY (owner_id, entry_id)""",
    ):
        await ch.command(statement, role="admin")


async def _engine(ch: ClickHouse, table: str) -> str:
    rows = await ch.query("SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                          {"t": table}, role="admin")
    return rows[0]["engine"] if rows else ""


async def _events_by_id(ch: ClickHouse) -> None:
    """workload_events becomes a ReplacingMergeTree keyed by event id (an engine cannot be
    altered: a new table, the rows copied, the two exchanged)."""
    if await _engine(ch, "workload_events") != "ReplacingMergeTree":
        await ch.command(_workload_table("workload_events_m2", ch.retention_days), role="admin")
        await ch.command("TRUNCATE TABLE workload_events_m2", role="admin")
        await ch.command(f"INSERT INTO workload_events_m2 ({', '.join(WORKLOAD_COLUMNS[:8])}) "
                         f"SELECT {', '.join(WORKLOAD_COLUMNS[:8])} FROM workload_events", role="admin")
        await ch.command("EXCHANGE TABLES workload_events AND workload_events_m2", role="admin")
    await ch.command("DROP TABLE IF EXISTS workload_events_m2", role="admin")


async def _corpus_index(ch: ClickHouse) -> None:
    await ch.command("ALTER TABLE corpus ADD INDEX IF NOT EXISTS text_ngrams lower(concat(title, ' ', content)) "
                     "TYPE ngrambf_v1(3, 4096, 3, 0) GRANULARITY 1", role="admin")
    await ch.command("ALTER TABLE corpus MATERIALIZE INDEX text_ngrams", role="admin", settings={"mutations_sync": 2})


MIGRATIONS: list[tuple[int, str, Callable[[ClickHouse], Awaitable[None]]]] = [
    (1, "initial tables", _initial),
    (2, "workload events keyed by event id, with cost and status", _events_by_id),
    (3, "corpus n-gram index for substring search", _corpus_index),
]


async def _retention(ch: ClickHouse) -> None:
    """The workload TTL is the setting's: changed here when the setting changed. Existing parts
    are not rewritten (`materialize_ttl_after_modify=0`): merges apply the new TTL as they go."""
    rows = await ch.query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                          "AND name = 'workload_events'", role="admin")
    if rows and f"toIntervalDay({ch.retention_days})" not in rows[0]["engine_full"]:
        await ch.command(f"ALTER TABLE workload_events MODIFY TTL {workload_ttl(ch.retention_days)}", role="admin",
                         settings={"materialize_ttl_after_modify": 0})
        log.info("workload_events TTL set to %d days", ch.retention_days)


def _sha256(password: str | None) -> str:
    # Only the hash reaches the server (and its query log), never the password.
    return hashlib.sha256((password or "").encode()).hexdigest()


async def _users(ch: ClickHouse) -> None:
    """The writer and reader as real users with grants (on a server that manages access);
    their passwords follow the settings at every start."""
    db, writer, reader = ch.database, ch.logins["writer"], ch.logins["reader"]
    for statement in (
        "CREATE SETTINGS PROFILE IF NOT EXISTS platform_readonly "
        "SETTINGS do_not_merge_across_partitions_select_final = 1, readonly = 1",
        f"CREATE USER IF NOT EXISTS {writer.user} IDENTIFIED WITH sha256_hash BY '{_sha256(writer.password)}'",
        f"ALTER USER {writer.user} IDENTIFIED WITH sha256_hash BY '{_sha256(writer.password)}'",
        f"CREATE USER IF NOT EXISTS {reader.user} IDENTIFIED WITH sha256_hash BY '{_sha256(reader.password)}'",
        f"ALTER USER {reader.user} IDENTIFIED WITH sha256_hash BY '{_sha256(reader.password)}' "
        "SETTINGS PROFILE 'platform_readonly'",
        f"GRANT SELECT ON {db}.* TO {reader.user}",
        f"GRANT SELECT, INSERT ON {db}.* TO {writer.user}",
        f"GRANT ALTER UPDATE, ALTER DELETE ON {db}.corpus TO {writer.user}",
        # Deleting an account deletes its events and moves its bill (app.backend.user_data).
        f"GRANT ALTER DELETE ON {db}.workload_events TO {writer.user}",
        f"GRANT ALTER DELETE ON {db}.usage_events TO {writer.user}",
    ):
        await ch.command(statement, role="admin")


async def migrate(ch: ClickHouse) -> list[int]:
    """Apply the migrations not yet applied, then the retention and (on a server) the users;
    the versions applied now."""
    await ch.command(MIGRATIONS_TABLE, role="admin")
    done = {r["version"] for r in await ch.query("SELECT version FROM platform_schema_migrations", role="admin")}
    applied = []
    for version, name, step in MIGRATIONS:
        if version in done:
            continue
        await step(ch)
        await ch.command("INSERT INTO platform_schema_migrations (version, name) SELECT {v:UInt32}, {n:String}",
                         {"v": version, "n": name}, role="admin")
        log.info("ClickHouse migration %d applied: %s", version, name)
        applied.append(version)
    await _retention(ch)
    if ch.manage_users:
        await _users(ch)
    return applied
