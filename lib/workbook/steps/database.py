"""Steps of 04_database: the platform's PostgreSQL read as a database engineer reads it.

asyncpg connections to the services' databases (closed with the check), the catalog read as
data (foreign keys, indexes, plans of the hot queries), failures forced inside the server
(a temporary trigger that refuses or stalls one check's marked rows only), a saturated pool
(a row the check holds locked while requests queue behind it), scratch databases migrated by
the platform's own command, and backups made with PostgreSQL's own tools (pg_dump/pg_restore,
pg_basebackup with the WAL archive for point-in-time recovery).

Everything a check makes is its own: rows of its users, scratch databases and backup copies
named from `ck.ns`, triggers that match only its marker, all removed when the check ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from workbook.clients import postgres
from workbook.clients.platform import AsyncAuth, AsyncBackend, User, metric
from workbook.clients.scope import Check
from workbook.params import Env
from workbook.paths import project_root
from workbook.polling import poll
from workbook.stack.postgres import bin_dir
from workbook.stats import LatencyStats

POOL_GAUGES = ("size", "checked_out", "overflow", "waiting", "timeouts")
# What the backend's hot queries filter on (table, column): listings per owner and per thread, a
# user's deletion per owner, runs an instance recovers by status, the bill per user and per run,
# the audit trail per row and per actor.
HOT_PREDICATES = (("threads", "owner_id"), ("messages", "thread_id"), ("messages", "owner_id"),
                  ("runs", "thread_id"), ("runs", "owner_id"), ("runs", "status"), ("run_steps", "run_id"),
                  ("usage_records", "user_id"), ("usage_records", "run_id"), ("usage_daily", "user_id"),
                  ("user_plans", "user_id"), ("data_audit", "table_name"), ("data_audit", "actor"))
# The platform's sessions in pg_stat_activity, by application_name (app.common.pool).
PLATFORM_APPS = r"^(auth|auth:audit|backend:.*)$"


# -- connections and names -------------------------------------------------------------------------

async def backend_db(ck: Check, env: Env) -> asyncpg.Connection:
    """The backend's database, as the workbook's own session (closed with the check)."""
    return await postgres.for_check(env, ck, database=env.expect.database.databases.backend)


async def auth_db(ck: Check, env: Env) -> asyncpg.Connection:
    return await postgres.for_check(env, ck, database=env.expect.database.databases.auth)


async def connect(ck: Check, env: Env, database: str) -> asyncpg.Connection:
    """Another database on the env's server (a scratch one, a restored copy)."""
    return await postgres.for_check(env, ck, database=database)


def ident(ns: str, prefix: str = "wb") -> str:
    """A short SQL identifier unique to a namespace (PostgreSQL names stop at 63 bytes)."""
    return f"{prefix}_{hashlib.sha1(ns.encode()).hexdigest()[:16]}"


# -- the pool --------------------------------------------------------------------------------------

async def pool_gauges(backend: AsyncBackend) -> dict[str, float]:
    """The pool as this instance's /metrics reports it (no database round trip: readable while
    the pool is saturated)."""
    text = await backend.metrics()
    return {g: metric(text, f"backend_db_pool_{g}") for g in POOL_GAUGES}


@dataclass
class Answer:
    status: int
    ms: float
    body: dict[str, Any]
    retry_after: str | None


@asynccontextmanager
async def thread_locked(db: asyncpg.Connection, thread_id: str) -> AsyncIterator[None]:
    """The thread's row locked by the check's own transaction: every edit of it waits, holding
    its pool connection, until the block ends (rolled back: the check changes nothing)."""
    tx = db.transaction()
    await tx.start()
    try:
        await db.execute("SELECT 1 FROM threads WHERE id = $1 FOR UPDATE", uuid.UUID(thread_id))
        yield
    finally:
        await tx.rollback()


async def edits_behind_lock(db: asyncpg.Connection, backend: AsyncBackend, user: User, thread_id: str, n: int,
                            release_when: Callable[[Sequence[asyncio.Task[Answer]]], Awaitable[object]]
                            ) -> list[Answer]:
    """`n` concurrent renames of a thread the check holds locked; the lock is released once
    `release_when(tasks)` returns. Each answer with its time from the request's start."""

    async def edit(i: int) -> Answer:
        t0 = time.perf_counter()
        resp = await backend.edit_thread_raw(user.access, thread_id, title=f"queued edit {i}")
        return Answer(resp.status_code, (time.perf_counter() - t0) * 1000, resp.json(), resp.headers.get("retry-after"))

    async with thread_locked(db, thread_id):
        tasks = [asyncio.create_task(edit(i)) for i in range(n)]
        try:
            await release_when(tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
    return list(await asyncio.gather(*tasks))


async def platform_sessions(db: asyncpg.Connection) -> list[asyncpg.Record]:
    """The platform's sessions on the whole server, with how long each has been in its state."""
    return await db.fetch(
        "SELECT pid, datname, application_name, state, wait_event, query, "
        "extract(epoch FROM now() - state_change) AS in_state_s, "
        "extract(epoch FROM now() - xact_start) AS in_xact_s "
        "FROM pg_stat_activity WHERE application_name ~ $1", PLATFORM_APPS)


# -- failures forced inside the server -------------------------------------------------------------

async def failing_trigger(ck: Check, db: asyncpg.Connection, table: str, timing: str, when: str, body: str) -> None:
    """A row trigger on `table` that runs `body` (PL/pgSQL) for rows matching `when` only (the
    check's own marker), dropped when the check ends."""
    name = ident(ck.ns, "wbfail")
    await db.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; "
                     f"RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END; END $$")
    ck.defer(db.execute, f"DROP FUNCTION IF EXISTS {name}() CASCADE")
    await db.execute(f"CREATE TRIGGER {name} {timing} ON {table} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}()")


async def count(db: asyncpg.Connection, sql: str, *args: Any) -> int:
    return int(await db.fetchval(sql, *args))


async def owner_counts(db: asyncpg.Connection, owner: str) -> dict[str, int]:
    """The user's rows per backend table (the bill by its user id; plan and daily quota)."""
    uid = uuid.UUID(owner)
    return {
        "threads": await count(db, "SELECT count(*) FROM threads WHERE owner_id = $1", uid),
        "messages": await count(db, "SELECT count(*) FROM messages m JOIN threads t ON t.id = m.thread_id "
                                    "WHERE t.owner_id = $1", uid),
        "runs": await count(db, "SELECT count(*) FROM runs WHERE owner_id = $1", uid),
        "run_steps": await count(db, "SELECT count(*) FROM run_steps s JOIN runs r ON r.id = s.run_id "
                                     "WHERE r.owner_id = $1", uid),
        "user_plans": await count(db, "SELECT count(*) FROM user_plans WHERE user_id = $1", uid),
        "usage_daily": await count(db, "SELECT count(*) FROM usage_daily WHERE user_id = $1", uid),
        "usage_records": await count(db, "SELECT count(*) FROM usage_records WHERE user_id = $1", uid),
    }


# -- the catalog as data ---------------------------------------------------------------------------

async def foreign_keys(db: asyncpg.Connection) -> list[str]:
    """Every foreign key of the public schema as "table.column -> referenced_table RULE"."""
    rules = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
    rows = await db.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, c.confrelid::regclass::text AS ref, c.confdeltype::text AS rule, "
        "array_agg(a.attname ORDER BY k.n) AS cols FROM pg_constraint c "
        "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
        "WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace GROUP BY c.oid, tbl, ref, rule")
    return sorted(f"{r['tbl']}.{','.join(r['cols'])} -> {r['ref']} {rules[r['rule']]}" for r in rows)


async def unindexed_foreign_keys(db: asyncpg.Connection) -> list[str]:
    """Foreign keys no index leads with (deleting a referenced row then scans the referencing table)."""
    rows = await db.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, c.conname FROM pg_constraint c WHERE c.contype = 'f' "
        "AND c.connamespace = 'public'::regnamespace AND NOT EXISTS (SELECT 1 FROM pg_index i "
        "WHERE i.indrelid = c.conrelid AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] = c.conkey)")
    return sorted(f"{r['tbl']}.{r['conname']}" for r in rows)


async def indexes(db: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every index of the public schema: table, name, key columns, predicate, size, validity, scans."""
    return await db.fetch(
        "SELECT t.relname AS tbl, c.relname AS name, i.indkey::int2[] AS keys, "
        "pg_get_expr(i.indpred, i.indrelid) AS pred, pg_get_expr(i.indexprs, i.indrelid) AS exprs, "
        "i.indisunique AS is_unique, i.indisvalid AS valid, i.indisready AS ready, "
        "pg_relation_size(c.oid) AS bytes, coalesce(s.idx_scan, 0) AS scans, "
        "array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n) "
        "      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) AS cols "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid "
        "WHERE t.relnamespace = 'public'::regnamespace ORDER BY t.relname, c.relname")


def redundant_indexes(found: Sequence[asyncpg.Record]) -> list[str]:
    """Indexes another index of the same table makes useless: the same keys, or a leading prefix
    of a non-unique one's keys (a unique index enforces something; it is never redundant)."""
    out = []
    for a in found:
        for b in found:
            if a["name"] == b["name"] or a["tbl"] != b["tbl"] or a["is_unique"] or a["exprs"] or b["exprs"]:
                continue
            if a["pred"] == b["pred"] and list(b["keys"][:len(a["keys"])]) == list(a["keys"]) and (
                    len(a["keys"]) < len(b["keys"]) or a["name"] > b["name"]):
                out.append(f"{a['tbl']}.{a['name']} (covered by {b['name']})")
    return sorted(out)


async def plan(db: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    """`EXPLAIN (ANALYZE, BUFFERS)` of `sql` as JSON, run inside a transaction that is rolled back
    (a DELETE explained deletes nothing)."""
    tx = db.transaction()
    await tx.start()
    try:
        raw = await db.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
    finally:
        await tx.rollback()
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    root = node.get("Plan", node)
    return [root, *(n for child in root.get("Plans", []) for n in plan_nodes(child))]


def scans_of(explained: dict[str, Any], table: str) -> list[str]:
    """How each scan of `table` in a plan reads it: 'Seq Scan', or 'Index Scan using <index>'..."""
    def how(n: dict[str, Any]) -> str:
        # A bitmap heap scan reads the table through the bitmap index scans below it.
        used = [n["Index Name"]] if "Index Name" in n else [c["Index Name"] for c in plan_nodes(n)[1:] if "Index Name" in c]
        return f"{n['Node Type']} using {', '.join(used)}" if used else n["Node Type"]

    return [how(n) for n in plan_nodes(explained) if n.get("Relation Name") == table]


async def generate_messages(db: asyncpg.Connection, owner: str, threads: int, messages: int) -> list[str]:
    """`threads` threads of `owner` and `messages` messages spread over them, written server-side
    in two statements (generate_series), as the platform's own rows would look; the thread ids."""
    uid = uuid.UUID(owner)
    ids = [r["id"] for r in await db.fetch(
        "INSERT INTO threads (id, owner_id, title, created_at, updated_at) "
        "SELECT gen_random_uuid(), $1, 'generated ' || g, now() - make_interval(secs => g), now() "
        "FROM generate_series(1, $2) g RETURNING id", uid, threads)]
    await db.execute(
        "INSERT INTO messages (id, thread_id, owner_id, role, content, created_at) "
        "SELECT gen_random_uuid(), ($1::uuid[])[1 + g % array_length($1::uuid[], 1)], $2, "
        "CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END, 'generated message ' || g, "
        "now() - make_interval(secs => g) FROM generate_series(1, $3) g", ids, uid, messages)
    await db.execute("ANALYZE threads; ANALYZE messages")
    return [str(i) for i in ids]


async def generate_strangers(scope: Check, env: Env, db: asyncpg.Connection, owners: int, threads_each: int) -> None:
    """Threads of `owners` other (made-up) users, so that one user's rows are a small part of the
    table as in production, where a planner reads them through an index; deleted with `scope`."""
    ids = [uuid.uuid4() for _ in range(owners)]
    await db.execute(
        "INSERT INTO threads (id, owner_id, title) SELECT gen_random_uuid(), o, 'stranger' "
        "FROM unnest($1::uuid[]) o, generate_series(1, $2)", ids, threads_each)

    # On a connection of its own: `db` may not outlive the notebook's fault checks (a restarted
    # server, terminated backends) when this is a shared fixture's.
    async def delete() -> None:
        conn = await postgres.connect(env, database=env.expect.database.databases.backend)
        try:
            await conn.execute("DELETE FROM threads WHERE owner_id = ANY($1::uuid[])", ids)
        finally:
            await conn.close()

    scope.defer(delete)


# -- migrations on a scratch database --------------------------------------------------------------

@asynccontextmanager
async def scratch_database(ck: Check, env: Env, template: str | None = None) -> AsyncIterator[str]:
    """A database of the check's own on the env's server (empty, or a copy of `template`),
    dropped when the block ends."""
    name = ident(ck.ns, "wbscratch")
    admin = await postgres.for_check(env, ck)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrated_template(scope: Check, env: Env) -> str:
    """A database the platform's command migrated to head, which checks copy (CREATE DATABASE ...
    TEMPLATE: instant) instead of each running every migration again; dropped with `scope`."""
    name = ident(scope.ns, "wbtemplate")
    admin = await postgres.connect(env)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    async def drop() -> None:
        conn = await postgres.connect(env)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    scope.defer(drop)
    code, out = await backend_migrate(env, name)
    assert code == 0, f"migrating a new database to head: {out[-800:]}"
    return name


def revisions() -> list[str]:
    """The backend's Alembic revisions, oldest first (read from its migration scripts)."""
    found: dict[str, str | None] = {}
    for path in (project_root() / "app" / "backend" / "migrations" / "versions").glob("*.py"):
        text = path.read_text()
        rev = re.search(r'^revision = "([^"]+)"', text, re.M)
        down = re.search(r'^down_revision = (?:"([^"]+)"|None)', text, re.M)
        if rev and down:
            found[rev.group(1)] = down.group(1)
    chain, current = [], None
    while True:
        nxt = [r for r, d in found.items() if d == current]
        if not nxt:
            return chain
        assert len(nxt) == 1, f"the backend's migrations branch after {current}: {nxt}"
        chain.append(current := nxt[0])


async def backend_migrate(env: Env, database: str, command: str = "migrate", revision: str | None = None) -> tuple[int, str]:
    """The platform's own migration command (`python -m app.backend migrate|downgrade`) run
    against `database` on the env's server: its exit code and output (the password scrubbed)."""
    svc = env.service("postgres")
    password = svc.secret() or ""
    child_env = {**os.environ, "BACKEND_ENV": "local", "BACKEND_DATABASE_PASSWORD": password,
                 "BACKEND_DATABASE_URL": svc.url.rsplit("/", 1)[0] + f"/{database}"}
    argv = [sys.executable, "-m", "app.backend", command, *(["--revision", revision] if revision else [])]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=project_root(), env=child_env, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(errors="replace").replace(password, "<secret>") if password else out.decode()


async def version_of(db: asyncpg.Connection) -> str | None:
    if not await db.fetchval("SELECT to_regclass('backend_alembic_version') IS NOT NULL"):
        return None
    return await db.fetchval("SELECT version_num FROM backend_alembic_version")


async def schema(db: asyncpg.Connection) -> dict[str, list[str]]:
    """The platform's public schema as data: columns (with type, nullability, default), constraints,
    indexes, triggers. Tables a check made (named `wb...`, of any run: another run's may come and
    go meanwhile) are not the platform's."""
    cols = await db.fetch("SELECT table_name, column_name, data_type, is_nullable, column_default "
                          "FROM information_schema.columns WHERE table_schema = 'public' "
                          "AND table_name NOT LIKE 'wb%' ORDER BY 1, 2")
    cons = await db.fetch("SELECT conrelid::regclass::text AS t, conname, pg_get_constraintdef(oid) AS d "
                          "FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
                          "AND conrelid::regclass::text NOT LIKE 'wb%' ORDER BY 1, 2")
    idx = await db.fetch("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE 'wb%' "
                         "ORDER BY 1")
    trg = await db.fetch("SELECT tgrelid::regclass::text AS t, tgname FROM pg_trigger WHERE NOT tgisinternal "
                         "AND tgrelid::regclass::text NOT LIKE 'wb%' ORDER BY 1, 2")
    return {"columns": [f"{r[0]}.{r[1]} {r[2]} {r[3]} {r[4]}" for r in cols],
            "constraints": [f"{r['t']}.{r['conname']} {_unparsed(r['d'])}" for r in cons],
            "indexes": [r[0] for r in idx], "triggers": [f"{r['t']}.{r['tgname']}" for r in trg]}


def _unparsed(definition: str) -> str:
    """A constraint's definition without casts and parentheses: PostgreSQL prints an IN list it
    parsed from a dump with casts placed differently from the one it parsed from DDL."""
    return re.sub(r"::[a-z ]+(\[\])?|[()]", "", definition)


async def tables(db: asyncpg.Connection) -> list[str]:
    return [r[0] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]


async def fingerprints(db: asyncpg.Connection) -> dict[str, tuple[int, str]]:
    """Per table: row count and an md5 over every row's text, in a stable order."""
    out = {}
    for t in await tables(db):
        n, digest = await db.fetchrow(
            f'SELECT count(*), md5(coalesce(string_agg(r::text, E\'\\n\' ORDER BY r::text), \'\')) FROM "{t}" r')
        out[t] = (int(n), str(digest))
    return out


# -- backups with PostgreSQL's own tools ----------------------------------------------------------

def tool(name: str) -> str:
    """A PostgreSQL client tool of the same major version as the embedded server (pgserver's)."""
    return str(bin_dir() / name)


async def run_tool(env: Env, *argv: str, timeout_s: float = 120) -> str:
    """Run a PostgreSQL tool with the env's password in PGPASSWORD (never on the command line);
    its output, or an AssertionError naming the tool and its last lines."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, "PGPASSWORD": env.service("postgres").secret() or ""},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{Path(argv[0]).name} exited {proc.returncode}: {text.strip()[-500:]}"
    return text


def server_url(env: Env, database: str) -> str:
    return env.service("postgres").url.rsplit("/", 1)[0] + f"/{database}"


def workdir(ck: Check) -> Path:
    """A directory of the check's own for backup files, removed when it ends."""
    path = Path(tempfile.mkdtemp(prefix=ident(ck.ns, "wbbackup") + "-"))
    ck.defer(shutil.rmtree, path, True)
    return path


# -- point-in-time recovery on the embedded stack ---------------------------------------------------

async def base_backup(ck: Check, env: Env) -> Path:
    """A physical copy of the whole cluster (pg_basebackup, with the WAL it needs to be consistent)."""
    work = workdir(ck)
    base = work / "base"
    await run_tool(env, tool("pg_basebackup"), "-d", server_url(env, "postgres"), "-D", str(base),
                   "-X", "stream", "-c", "fast", "--no-sync")
    return base


async def archived_now(db: asyncpg.Connection, within_s: float) -> str:
    """Close the current WAL segment and wait until the archiver has copied it; its name."""
    # A commit now, so the archive holds one after any target time chosen before this call:
    # recovery stops at the first commit past its target and refuses to end short of one.
    await db.execute("SELECT pg_current_xact_id()")
    segment = await db.fetchval("SELECT pg_walfile_name(pg_switch_wal())")
    await poll(lambda: db.fetchrow("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"),
               until=lambda r: (r["last_archived_wal"] or "") >= segment, within_s=within_s, every_s=0.1,
               what=f"WAL segment {segment} archived")
    return str(segment)


async def recovered_copy(ck: Check, env: Env, base: Path, target_time: str, within_s: float) -> asyncpg.Connection:
    """Start the base backup as its own server, replaying the archived WAL up to `target_time`
    (recovery_target_time; then promoted), and connect to its backend database. The server is
    stopped and its files removed when the check ends."""
    from workbook.stack.manager import free_port
    from workbook.stack.postgres import start_copy
    from workbook.stack.state import Paths

    archive = Paths(project_root()).wal_archive
    (base / "recovery.signal").touch()
    with (base / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"restore_command = 'cp {archive}/%f %p'\nrecovery_target_time = '{target_time}'\n"
                   "recovery_target_action = 'promote'\n")
    port = free_port()
    proc = start_copy(base, port, base.parent / "recovered.log")

    def stop() -> None:
        proc.terminate()
        proc.wait(30)

    ck.defer(stop)
    svc = env.service("postgres")
    url = f"postgresql://{svc.user or 'postgres'}@127.0.0.1:{port}/{env.expect.database.databases.backend}"

    async def connect() -> asyncpg.Connection | None:
        if proc.poll() is not None:
            raise RuntimeError(f"the recovered server exited: {(base.parent / 'recovered.log').read_text()[-800:]}")
        try:
            return await asyncpg.connect(url, password=svc.secret(), timeout=2)
        except (OSError, asyncpg.PostgresError):
            return None

    conn = await poll(connect, until=lambda c: c is not None, within_s=within_s, every_s=0.2,
                      what="the recovered copy accepting connections")
    assert conn is not None
    ck.defer(conn.close)
    await poll(lambda: conn.fetchval("SELECT pg_is_in_recovery()"), until=lambda r: r is False,
               within_s=within_s, every_s=0.1, what="the recovered copy promoted")
    return conn


async def trim_archive(env: Env, base: Path) -> None:
    """Remove archived WAL older than `base` needs: the archive keeps what the newest backup needs."""
    from workbook.stack.state import Paths

    # Recovery renames the label once it has read it.
    label = next(p for p in (base / "backup_label", base / "backup_label.old") if p.exists()).read_text()
    start = re.search(r"START WAL LOCATION: .* \(file ([0-9A-F]{24})\)", label)
    if start:
        await run_tool(env, tool("pg_archivecleanup"), str(Paths(project_root()).wal_archive), start.group(1))


# -- what a person reads -------------------------------------------------------------------------

def plot_latency(series: dict[str, LatencyStats], budget_ms: float) -> None:
    """Each series' latency distribution with its p50 and p95, and the budget, as a plotly chart."""
    import plotly.graph_objects as go
    from IPython.display import display

    fig = go.Figure()
    for name, stats in series.items():
        fig.add_trace(go.Box(y=list(stats.samples_ms), name=f"{name} (p50 {stats.percentile(50):.0f}, "
                                                            f"p95 {stats.percentile(95):.0f} ms)", boxpoints="all"))
    fig.add_hline(y=budget_ms, line_dash="dash", annotation_text=f"p95 budget {budget_ms:.0f} ms")
    fig.update_layout(yaxis_title="ms", height=350, margin={"t": 30})
    display(fig)


def show_index_sizes(found: Sequence[asyncpg.Record]) -> None:
    import pandas as pd
    from IPython.display import display

    display(pd.DataFrame([{"table": r["tbl"], "index": r["name"], "columns": ", ".join(r["cols"]),
                           "kB": r["bytes"] // 1024, "scans": r["scans"]} for r in found]))


# -- traffic through a fault -----------------------------------------------------------------------

@dataclass
class Write:
    status: int  # 0: no HTTP answer at all
    body: dict[str, Any]
    at: float  # time.monotonic() when it was sent
    ms: float


async def write_stream(instances: Sequence[AsyncBackend], user: User, thread_id: str, stop: asyncio.Event,
                       out: list[Write], pace_s: float = 0.02) -> None:
    """Post messages to a thread, alternating instances, until `stop` is set; every answer into `out`."""
    i = 0
    while not stop.is_set():
        at = time.monotonic()
        try:
            resp = await instances[i % len(instances)].add_message_raw(user.access, thread_id, f"w{i}")
            body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
            out.append(Write(resp.status_code, body, at, (time.monotonic() - at) * 1000))
        except httpx.TransportError as e:
            out.append(Write(0, {"error": type(e).__name__}, at, (time.monotonic() - at) * 1000))
        i += 1
        await asyncio.sleep(pace_s)  # the stream's pace, not a wait on the platform


async def through(fault: Callable[[], Awaitable[object]], instances: Sequence[AsyncBackend], user: User,
                  thread_id: str, within_s: float, successes_after: int = 10) -> tuple[list[Write], float]:
    """A write stream running before, during and after `fault()` (which returns once the server
    is back, at monotonic time T) until `successes_after` writes sent after T succeeded (within
    `within_s`): every answer, and T."""
    writes: list[Write] = []
    stop = asyncio.Event()
    stream = asyncio.create_task(write_stream(instances, user, thread_id, stop, writes))
    try:
        await poll(lambda: sum(w.status == 201 for w in writes), until=lambda n: n >= 5, within_s=10,
                   what="the write stream under way")
        await fault()
        back = time.monotonic()
        await poll(lambda: sum(w.status == 201 and w.at >= back for w in writes), until=lambda n: n >= successes_after,
                   within_s=within_s, what=f"{successes_after} writes succeeding after the server came back")
    finally:
        stop.set()
        await stream
    return writes, back


async def user_with_a_run(ck: Check, env: Env, auth: AsyncAuth, backend: AsyncBackend) -> tuple[User, dict[str, Any], dict[str, Any]]:
    """A user with a thread, a message and a finished supervisor run (steps, usage records: its
    bill), once the run's usage events are in ClickHouse too; those rows go with the check."""
    from workbook.clients import clickhouse
    from workbook.steps.agents import usage_event_rows

    user = await auth.new_user(ck)
    ck.defer(asyncio.to_thread, clickhouse.forget_user_rows, env, user.id)
    thread = await backend.new_thread(ck, user, "cascade")
    await backend.add_message_raw(user.access, thread["id"], "hello")
    run = await backend.agent_run(user.access, thread["id"], input="How much did my workloads cost last week?")
    db = await backend_db(ck, env)
    billed = await count(db, "SELECT count(*) FROM usage_records WHERE run_id = $1", uuid.UUID(run["id"]))
    ch = clickhouse.client(env)
    try:
        await usage_event_rows(ch, [run["id"]], billed, within_s=10)
    finally:
        ch.close()
    return user, thread, run


async def big_user(scope: Check, env: Env, auth: AsyncAuth) -> tuple[User, list[str]]:
    """A user with 2000 threads and 100k messages, among 20k threads of 200 other owners (the
    hot queries' data at a size where plans and latency mean something); the thread ids. All of
    it goes with `scope` (the user's rows with the user's deletion)."""
    user = await auth.new_user(scope)
    conn = await connect(scope, env, env.expect.database.databases.backend)
    await generate_strangers(scope, env, conn, 200, 100)
    return user, await generate_messages(conn, user.id, 2000, 100_000)
