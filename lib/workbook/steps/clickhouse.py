"""Steps of 06_clickhouse: ClickHouse clients of a check (the admin, the platform's writer and
reader logins), workload events made to be ingested and the aggregates the platform must
return computed from them independently (Python's Decimal and zoneinfo, never ClickHouse),
rows generated server-side, EXPLAIN read as data, backups and the query log.

Every row a check writes belongs to its own user (or a stranger owner it made) and is deleted
when the check ends; scratch databases are dropped; on the embedded stack a backup's files go too.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import shutil
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from clickhouse_connect.driver.client import Client
from IPython.display import display

from workbook.clients import clickhouse, tls
from workbook.clients.clickhouse import forget_user_rows
from workbook.clients.platform import AsyncAuth, AsyncBackend, User
from workbook.clients.scope import Check
from workbook.concurrency import gather_bounded
from workbook.params import Env
from workbook.paths import project_root
from workbook.stack.state import Paths
from workbook.stats import LatencyStats

Event = dict[str, Any]
MODELS = ("gpt-4o", "claude-3-5-sonnet", "llama-3-70b")
PLATFORM_TABLES = ("workload_events", "usage_events", "corpus")
# ClickHouse documents quantileTDigest's error as at most 1% (of rank, as the check reads it).
TDIGEST_RANK_ERROR = 0.01


# -- clients ---------------------------------------------------------------------------------------

def client_for(ck: Check, env: Env, login: str = "clickhouse", **kwargs: Any) -> Client:
    """A clickhouse-connect client of `login` (`clickhouse`: the admin; `clickhouse_writer`,
    `clickhouse_reader`: the platform's logins), without a server session unless `kwargs` asks,
    closed when the check ends."""
    kwargs.setdefault("autogenerate_session_id", False)
    ch = clickhouse.client(env, login, **kwargs)
    ck.defer(ch.close)
    return ch


async def rows(ch: Client, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    result = await asyncio.to_thread(lambda: ch.query(sql, parameters=params).result_rows)
    return [tuple(r) for r in result]


async def value(ch: Client, sql: str, **params: Any) -> Any:
    return (await rows(ch, sql, **params))[0][0]


async def run(ch: Client, sql: str, settings: Mapping[str, Any] | None = None, **params: Any) -> Any:
    return await asyncio.to_thread(lambda: ch.command(sql, parameters=params, settings=dict(settings or {})))


async def deleted(ch: Client, table: str, where: str, stall_s: float, **params: Any) -> None:
    """`DELETE FROM table WHERE where`, waited for by its effect. Mutations apply in order, so a
    DELETE waits behind every one queued before it: each user deletion of every notebook running
    meanwhile (CI's run timed a synchronous one out at 30 s). It waits while that queue moves and
    fails naming it when nothing moved for `stall_s`."""
    await run(ch, f"DELETE FROM {table} WHERE {where}", {"lightweight_deletes_sync": 0}, **params)
    loop = asyncio.get_running_loop()
    ahead: tuple[Any, ...] = ()
    moved = loop.time()
    while await value(ch, f"SELECT count() FROM {table} WHERE {where}", **params):
        queue = (await rows(ch, "SELECT count(), sum(parts_to_do), any(latest_fail_reason) FROM system.mutations "
                                "WHERE database = currentDatabase() AND table = {t:String} AND NOT is_done", t=table))[0]
        if queue != ahead:
            ahead, moved = queue, loop.time()
        elif loop.time() - moved > stall_s:
            raise AssertionError(f"DELETE on {table} not applied: {queue[0]} mutations queued with {queue[1]} parts "
                                 f"to do, none progressed in {stall_s:.0f} s {queue[2]}".strip())
        await asyncio.sleep(0.2)


async def http_query(env: Env, login: str, sql: str, **settings: str) -> tuple[int, str]:
    """`sql` sent as ClickHouse's HTTP interface takes it, with `settings` in the URL as any
    client may send them (clickhouse-connect itself drops settings a readonly user may not
    change, so the server's refusal is only seen this way): the status and body."""
    svc = env.service(login)
    async with httpx.AsyncClient(timeout=env.timeouts.request_s, verify=tls.context()) as http:
        resp = await http.post(svc.url, params={"database": svc.database or "default", **settings},
                               content=sql.encode(), auth=(svc.user or "default", svc.secret() or ""))
    return resp.status_code, resp.text.strip()


def refusal(ch: Client, sql: str, settings: Mapping[str, Any] | None = None) -> str:
    """ClickHouse's error for `sql` (`Code: N ... (NAME)`), or '' if it ran."""
    try:
        ch.command(sql, settings=dict(settings or {}))
    except Exception as e:
        found = re.search(r"Code: (\d+)\. DB::Exception: (.*?\(([A-Z_]+)\))", str(e))
        return f"{found.group(1)} {found.group(3)}: {found.group(2)[:160]}" if found else str(e)[:200]
    return ""


# -- users and their rows --------------------------------------------------------------------------

async def events_user(ck: Check, auth: AsyncAuth, env: Env) -> User:
    """A logged-in user whose ClickHouse rows go with the check."""
    user = await auth.new_user(ck)
    ck.defer(asyncio.to_thread, forget_user_rows, env, user.id)
    return user


async def bulk_user(ck: Check, auth: AsyncAuth, env: Env) -> User:
    """`events_user` for generated volumes: its workload events are also removed physically at
    the end. A lightweight DELETE only masks rows until a merge; a million masked rows a run made
    every later mutation and FINAL read on the table pay for them (a long-lived stack's full run
    went from ~495 s to ~600 s in two runs)."""
    user = await events_user(ck, auth, env)
    ck.defer(remove_physically, env, user.id)
    return user


async def remove_physically(env: Env, user_id: str) -> None:
    admin = clickhouse.client(env, autogenerate_session_id=False)
    try:
        parts = [r[0] for r in await rows(admin, "SELECT DISTINCT _partition_id FROM workload_events "
                                                 "WHERE user_id = {u:String}", u=user_id)]
        await deleted(admin, "workload_events", "user_id = {u:String}", env.timeouts.request_s, u=user_id)
        for part in parts:
            await run(admin, f"OPTIMIZE TABLE workload_events PARTITION ID '{part}' FINAL")
    finally:
        admin.close()


def scratch_database(ck: Check, ch: Client) -> str:
    """A database of the check's own, dropped when it ends."""
    name = ck.ns
    ch.command(f"CREATE DATABASE IF NOT EXISTS {name}")
    ck.defer(ch.command, f"DROP DATABASE IF EXISTS {name} SYNC")
    return name


# -- events and what the platform must compute from them ----------------------------------------

def make_events(prefix: str, n: int, now: datetime, days: int = 10, seed: int = 6, **fixed: Any) -> list[Event]:
    """`n` valid workload events, ids `<prefix>-<i>`, spread over the last `days` days with
    timestamps in several UTC offsets, costs with nine decimals, ~5% errors; `fixed` overrides
    fields of every event."""
    rnd = random.Random(seed)
    offsets = [timezone.utc, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5, minutes=-30))]
    events = []
    for i in range(n):
        ts = now - timedelta(seconds=rnd.randrange(1, days * 86400))
        events.append({
            "event_id": f"{prefix}-{i}", "ts": ts.astimezone(offsets[i % 3]).isoformat(timespec="milliseconds"),
            "workload": rnd.choice(("chat", "batch", "rag")), "model": MODELS[i % len(MODELS)],
            "requests": rnd.randint(1, 5), "prompt_tokens": rnd.randint(0, 5000),
            "completion_tokens": rnd.randint(0, 2000), "latency_ms": round(rnd.lognormvariate(5, 0.6), 3),
            "cost_usd": str(Decimal(rnd.randint(0, 10**9)) / Decimal(10**9)),
            "status": "error" if rnd.random() < 0.05 else "ok", **fixed})
    return events


def instant(event: Event) -> datetime:
    return datetime.fromisoformat(event["ts"]).astimezone(timezone.utc)


def expected_usage(events: Iterable[Event], tz: str = "UTC", week: bool = False) -> list[dict[str, Any]]:
    """Per (period, model): events, requests, tokens and exact cost, as the usage endpoint must say."""
    zone = ZoneInfo(tz)
    acc: dict[tuple[date, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    for e in events:
        day = instant(e).astimezone(zone).date()
        period = day - timedelta(days=day.weekday()) if week else day
        a = acc[(period, e["model"])]
        a[0] += 1
        a[1] += e["requests"]
        a[2] += e["prompt_tokens"]
        a[3] += e["completion_tokens"]
        a[4] += Decimal(e["cost_usd"])
    return [{"period": p.isoformat(), "model": m, "events": a[0], "requests": a[1], "prompt_tokens": a[2],
             "completion_tokens": a[3], "cost_usd": a[4]} for (p, m), a in sorted(acc.items())]


def as_reported(rows_: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The usage endpoint's rows with costs as Decimals (it sends them as exact strings)."""
    return [{**r, "cost_usd": Decimal(r["cost_usd"])} for r in rows_]


def latencies(events: Iterable[Event]) -> dict[str, list[float]]:
    by_model: dict[str, list[float]] = defaultdict(list)
    for e in events:
        by_model[e["model"]].append(float(e["latency_ms"]))
    return {m: sorted(v) for m, v in by_model.items()}


def within_rank_error(reported: float, ordered: Sequence[float], q: float, error: float = TDIGEST_RANK_ERROR) -> bool:
    """`reported` lies between the exact values at ranks q - error and q + error."""
    low = ordered[max(0, math.floor((q - error) * (len(ordered) - 1)))]
    high = ordered[min(len(ordered) - 1, math.ceil((q + error) * (len(ordered) - 1)))]
    return low <= reported <= high


def error_rates(events: Iterable[Event]) -> dict[str, tuple[int, int]]:
    """(errors, events) per model."""
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in events:
        acc[e["model"]][0] += e["status"] == "error"
        acc[e["model"]][1] += 1
    return {m: (a[0], a[1]) for m, a in acc.items()}


def window(now: datetime, days: int) -> dict[str, str]:
    """start/end parameters covering the last `days` days up to a minute past `now`."""
    return {"start": (now - timedelta(days=days)).isoformat(), "end": (now + timedelta(minutes=1)).isoformat()}


# -- ClickHouse's own view -----------------------------------------------------------------------

async def chunked(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    """`data` as a streamed (chunked) request body."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def stored_events(ch: Client, user_id: str, final: bool = True) -> list[tuple[Any, ...]]:
    """(event_id, ts, model, requests, prompt_tokens, completion_tokens, latency_ms, cost_usd, status) of
    `user_id`'s stored events, by event id; `final`: as after a merge (one row per event id)."""
    found = await rows(ch, f"SELECT event_id, ts, model, requests, prompt_tokens, completion_tokens, latency_ms, "
                           f"cost_usd, status FROM workload_events {'FINAL' if final else ''} "
                           "WHERE user_id = {u:String} ORDER BY event_id", u=user_id)
    # clickhouse-connect hands a DateTime64(3, 'UTC') back as a naive datetime in UTC.
    return [(r[0], r[1].replace(tzinfo=timezone.utc), *r[2:]) for r in found]


async def generate_events(ch: Client, user_id: str, n: int, days: int) -> None:
    """`n` events of `user_id` over the last `days` days, made by ClickHouse itself (`numbers()`)
    as the admin, so nothing crosses the wire: three models, latency 0..999 ms, 2% errors."""
    await run(ch, "INSERT INTO workload_events (user_id, ts, workload, model, requests, prompt_tokens, "
                  "completion_tokens, latency_ms, event_id, cost_usd, status) "
                  "SELECT {u:String}, now64(3) - toIntervalMillisecond(number * {step:UInt64}), 'generated', "
                  "['gpt-4o', 'claude-3-5-sonnet', 'llama-3-70b'][number % 3 + 1], 1, number % 1000, number % 100, "
                  "number % 1000, concat('gen-', toString(number)), toDecimal64(number % 1000, 9) / 1000000, "
                  "if(number % 50 = 0, 'error', 'ok') FROM numbers({n:UInt64})",
              {"insert_allow_materialized_columns": 1}, u=user_id, n=n, step=days * 86_400_000 // n)


async def explain_indexes(ch: Client, sql: str, **params: Any) -> dict[str, tuple[int, int]]:
    """EXPLAIN indexes = 1 of `sql`, as {index: (parts selected, parts total)} plus
    {index + ' granules': (selected, total)} and {index + ' keys': ...} for every index the
    plan used (MinMax, Partition, PrimaryKey, Skip)."""
    text = "\n".join(r[0] for r in await rows(ch, f"EXPLAIN indexes = 1 {sql}", **params))
    found: dict[str, Any] = {}
    for block in re.split(r"\n\s*(?=(?:Min-Max|MinMax|Partition|PrimaryKey|Skip)\s*\n)", text):
        head = block.strip().splitlines()[0].strip()
        if head not in ("Min-Max", "MinMax", "Partition", "PrimaryKey", "Skip"):
            continue
        name = re.search(r"Name: (\w+)", block)
        key = f"Skip {name.group(1)}" if head == "Skip" and name else head
        if parts := re.search(r"Parts: (\d+)/(\d+)", block):
            found[key] = (int(parts.group(1)), int(parts.group(2)))
        if granules := re.search(r"Granules: (\d+)/(\d+)", block):
            found[f"{key} granules"] = (int(granules.group(1)), int(granules.group(2)))
        if keys := re.search(r"Keys:\s*\n((?:\s+\w.*\n)+)", block + "\n"):
            found[f"{key} keys"] = tuple(k.strip() for k in keys.group(1).splitlines())
    return found


async def parts_of(ch: Client, user_id: str) -> int:
    """How many active parts hold `user_id`'s workload events."""
    return int(await value(ch, "SELECT uniqExact(_part) FROM workload_events WHERE user_id = {u:String}", u=user_id))


async def active_parts(ch: Client) -> dict[str, int]:
    found = dict(await rows(ch, "SELECT table, count() FROM system.parts WHERE database = currentDatabase() "
                                "AND active AND table IN {t:Array(String)} GROUP BY table", t=list(PLATFORM_TABLES)))
    return {t: int(found.get(t, 0)) for t in PLATFORM_TABLES}


async def logged_failures(ch: Client, marker: str) -> list[tuple[Any, ...]]:
    """(type, exception_code, exception) of the queries containing `marker` that failed, as the
    engine's query log has them."""
    await run(ch, "SYSTEM FLUSH LOGS")
    return await rows(ch, "SELECT type, exception_code, exception FROM system.query_log WHERE "
                          "position(query, {m:String}) > 0 AND exception_code != 0 AND "
                          "position(query, 'system.query_log') = 0", m=marker)


async def logged_inserts(ch: Client, table: str, since: datetime) -> list[int]:
    """The rows each INSERT into `table` (of the current database) wrote since `since`, as the
    engine's query log has them: one entry per INSERT statement, whoever sent it."""
    await run(ch, "SYSTEM FLUSH LOGS")
    found = await rows(ch, "SELECT written_rows FROM system.query_log WHERE type = 'QueryFinish' AND query_kind = 'Insert' "
                           "AND has(tables, currentDatabase() || '.' || {t:String}) "
                           "AND event_time_microseconds >= {s:DateTime64(6)} ORDER BY event_time_microseconds",
                       t=table, s=since.astimezone(timezone.utc).replace(tzinfo=None))
    return [int(r[0]) for r in found]


async def reader_queries(ch: Client, pattern: str, since: datetime, user_id: str) -> list[tuple[Any, ...]]:
    """(user, readonly setting) of every finished query since `since` whose text contains
    `pattern` and is about `user_id`: its id in the text (a server that logs queries with their
    parameters filled in, as the chDB gateway does) or the platform's `{user:String}` placeholder
    (one that logs them as sent). Other checks' queries of the same shape are not this one's."""
    await run(ch, "SYSTEM FLUSH LOGS")
    return await rows(ch, "SELECT user, Settings['readonly'] FROM system.query_log WHERE type = 'QueryFinish' "
                          "AND event_time_microseconds >= {s:DateTime64(6)} AND position(query, {p:String}) > 0 "
                          "AND (position(query, {u:String}) > 0 OR position(query, {ph:String}) > 0) "
                          "AND position(query, 'system.query_log') = 0",
                      s=since.astimezone(timezone.utc).replace(tzinfo=None), p=pattern, u=user_id, ph="{user:String}")


async def checksum(ch: Client, table: str, user_id: str) -> tuple[int, int]:
    """(rows, order-independent checksum) of `user_id`'s rows of `table` (db.name)."""
    count, digest = (await rows(ch, f"SELECT count(), groupBitXor(cityHash64(event_id, ts, model, cost_usd, "
                                    f"latency_ms)) FROM {table} FINAL WHERE user_id = {{u:String}}", u=user_id))[0]
    return int(count), int(digest)


def drop_backup_files(env: Env, name: str) -> None:
    """A backup's directory, on the embedded stack (elsewhere the server's operators own its disk)."""
    if env.stack == "embedded":
        shutil.rmtree(Paths(project_root()).data("clickhouse") / "backups" / name, ignore_errors=True)


# -- charts --------------------------------------------------------------------------------------

def plot_latencies(title: str, measured: Mapping[str, LatencyStats], budget_ms: float) -> None:
    """p50 and p95 per endpoint against the budget, as a plotly chart in the notebook."""
    names = list(measured)
    figure = {"data": [{"type": "bar", "name": q, "x": names, "y": [getattr(measured[n], q) for n in names]}
                       for q in ("p50", "p95")] +
                      [{"type": "scatter", "mode": "lines", "name": "budget", "x": names,
                        "y": [budget_ms] * len(names)}],
              "layout": {"title": {"text": title}, "yaxis": {"title": {"text": "ms"}}, "barmode": "group"}}
    display({"application/vnd.plotly.v1+json": figure,
             "text/plain": "; ".join(f"{n}: {s}" for n, s in measured.items())}, raw=True)


# -- arrangements a section shares -----------------------------------------------------------------

async def ingested_dataset(scope: Check, auth: AsyncAuth, backend: AsyncBackend, env: Env,
                           n: int) -> tuple[User, list[Event], datetime]:
    """A user with `n` events ingested through the API (all accepted), the events and the
    moment they were made at: what a section's checks aggregate independently."""
    user = await events_user(scope, auth, env)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    sent = make_events(scope.ns, n, now)
    answer = await backend.ingest(user.access, sent)
    if answer["accepted"] != n:
        raise AssertionError(f"the dataset's batch was not taken whole: {answer}")
    return user, sent, now


@dataclass
class Backup:
    user: User
    name: str  # the backup's File() name
    status: str
    point: tuple[int, int]  # (rows, checksum) of the user's rows when it was taken
    database: str  # the scratch database it was restored into


async def backed_up_user(scope: Check, auth: AsyncAuth, backend: AsyncBackend, env: Env) -> Backup:
    """The documented path end to end: 500 events of a user ingested, `BACKUP TABLE
    workload_events PARTITIONS <their months>`, then the table changed (100 events added, 111 deleted), then the backup
    restored into a scratch database. The backup's files and the database go with `scope`."""
    admin = clickhouse.client(env, autogenerate_session_id=False)
    scope.defer(admin.close)
    user = await events_user(scope, auth, env)
    now = datetime.now(timezone.utc)
    await backend.ingest(user.access, make_events(f"{scope.ns}-a", 500, now))
    point = await checksum(admin, "workload_events", user.id)
    scope.defer(drop_backup_files, env, scope.ns)
    # The months that hold the user's events, merged first: rows gone by lightweight DELETE (every
    # user deletion, every check's cleanup) stay in their parts until a merge, and a backup copies
    # parts. The whole table (06's million generated rows, the garbage of earlier runs) took the
    # single-threaded server past the request timeout, and every other client with it.
    months = ", ".join(str(r[0]) for r in await rows(
        admin, "SELECT DISTINCT toYYYYMM(ts) FROM workload_events WHERE user_id = {u:String}", u=user.id))
    for month in months.split(", "):
        await run(admin, f"OPTIMIZE TABLE workload_events PARTITION {month} FINAL")
    status = (await rows(admin, f"BACKUP TABLE workload_events PARTITIONS {months} TO File('{scope.ns}')"))[0][1]
    await backend.ingest(user.access, make_events(f"{scope.ns}-b", 100, now))
    await deleted(admin, "workload_events", "user_id = {u:String} AND startsWith(event_id, {p:String})",
                  env.timeouts.request_s, u=user.id, p=f"{scope.ns}-a-1")
    database = scratch_database(scope, admin)
    await rows(admin, f"RESTORE TABLE workload_events AS {database}.workload_events FROM File('{scope.ns}')")
    return Backup(user, scope.ns, status, point, database)


async def read_while_writing(backend: AsyncBackend, user: User, writers: Sequence[Callable[[], Awaitable[Any]]],
                             span: Mapping[str, str]) -> list[dict[str, int]]:
    """Run the writers (all at once) while one reader reads the user's usage again and again
    until they are done; every reading as {model: events}."""
    seen: list[dict[str, int]] = []
    writing = asyncio.ensure_future(gather_bounded(len(writers), writers))
    while not writing.done():
        got = await backend.analytics(user.access, "usage", **span)
        counts: dict[str, int] = defaultdict(int)
        for r in got["rows"]:
            counts[r["model"]] += r["events"]
        seen.append(dict(counts))
    await writing
    return seen


def _month(days_ago: int) -> tuple[datetime, str]:
    ts = (datetime.now(timezone.utc) - timedelta(days=days_ago)).replace(tzinfo=None, microsecond=0)
    return ts, f"{ts:%Y%m}"


# workload_events' columns with their types: clickhouse-connect does not insert MATERIALIZED
# columns (event_id, cost_usd, status) unless told the types instead of reading the table's.
EVENT_COLUMNS = {"user_id": "String", "ts": "DateTime64(3, 'UTC')", "workload": "LowCardinality(String)",
                 "model": "LowCardinality(String)", "requests": "UInt32", "prompt_tokens": "UInt64",
                 "completion_tokens": "UInt64", "latency_ms": "Float64", "event_id": "String",
                 "cost_usd": "Decimal(18, 9)", "status": "LowCardinality(String)"}


async def add_aged_events(ch: Client, user_id: str, ages: Mapping[str, int]) -> str:
    """Events `<user_id>-<name>` stamped `ages[name]` days ago, written as the admin (the API
    refuses what is past retention); the partition id of the oldest."""
    data = [[user_id, _month(days)[0], "aged", "gpt-4o", 1, 1, 1, 1.0, f"{user_id}-{name}", Decimal(0), "ok"]
            for name, days in ages.items()]
    await asyncio.to_thread(ch.insert, "workload_events", data, column_names=list(EVENT_COLUMNS),
                            column_type_names=list(EVENT_COLUMNS.values()),
                            settings={"insert_allow_materialized_columns": 1})
    return _month(max(ages.values()))[1]


async def add_aged_usage(ch: Client, user_id: str, days_ago: int) -> str:
    """A usage event (a model call's cost: the bill) of `user_id`, `days_ago` days old; its partition id."""
    ts, month = _month(days_ago)
    await asyncio.to_thread(ch.insert, "usage_events", [[f"{user_id}-run", 1, user_id, "data", "gpt-4o", 10, 5, 0.01, ts]],
                            column_names=["run_id", "seq", "user_id", "agent", "model", "prompt_tokens",
                                          "completion_tokens", "cost_usd", "ts"])
    return month
