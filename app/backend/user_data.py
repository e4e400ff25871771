"""A deleted user's data in the backend's stores: what there is, and deleting it (the
repository behind `app.backend.deletions`).

Deleted: threads (with their messages, runs and steps, by FK cascade), the plan row, the daily
run counts, provider connections, team memberships and owned teams, the Redis state of those threads and runs and of the user's sockets, and in
ClickHouse the workload events and corpus entries. Kept, anonymised: the bill. Usage records
in PostgreSQL (and their copies in ClickHouse's `usage_events`) are what was consumed and
charged; deleting them would make past invoices and the provider's bill impossible to
reconcile, while keeping the user's id would keep a person in them (invoices, checkout
sessions and payment events likewise). They are rewritten to the
deletion's tombstone, a random id recorded nowhere else, rather than nulled, so one account's
rows still add up together (`anonymised_at` says when). Every step is idempotent: a deletion
interrupted anywhere is finished by running it again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.agents.engine import USAGE_COLUMNS
from app.agents.scope import input_key, stop_key
from app.backend.events import LOCK_TTL_S, audience_key, lock_key, replay_key, seq_key
from app.backend.runs import ACTIVE, lease_key
from app.backend.ws.connection import conn_key, user_conns_key
from app.common.clickhouse import ClickHouse
from app.common.tables import (billing_events, checkout_sessions, invoices, messages, provider_connections, run_steps,
                               runs, team_members, team_threads, teams, threads, usage_daily, usage_records,
                               user_plans)

# ClickHouse tables holding the user's own rows, by the column naming the user.
CLICKHOUSE_DELETED = {"workload_events": "user_id", "corpus": "owner_id"}


@dataclass
class Holdings:
    """The ids under which the user's data lives outside its rows."""

    threads: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    active_runs: list[str] = field(default_factory=list)
    # Threads of runs going or just ended: the last event of a run is published after its end is
    # stored, so one of these may still be writing its replay to Redis.
    busy_threads: list[str] = field(default_factory=list)
    input_keys: list[str] = field(default_factory=list)
    # Team threads whose live events the user hears (app.backend.teams): they stop hearing them.
    team_threads: list[str] = field(default_factory=list)


async def holdings(db: AsyncEngine, user_id: str) -> Holdings:
    uid = uuid.UUID(user_id)
    async with db.connect() as conn:
        thread_ids = [str(r.id) for r in await conn.execute(select(threads.c.id).where(threads.c.owner_id == uid))]
        run_rows = (await conn.execute(select(runs.c.id, runs.c.status, runs.c.thread_id, runs.c.finished_at,
                                              func.now().label("now")).where(runs.c.owner_id == uid))).all()
        # A round of questions is named by the seq of its `input_required` step (scope.ask).
        rounds = (await conn.execute(select(run_steps.c.run_id, run_steps.c.seq)
                                     .join(runs, runs.c.id == run_steps.c.run_id)
                                     .where(runs.c.owner_id == uid, run_steps.c.kind == "input_required"))).all()
        heard = [str(t) for t in (await conn.execute(
            select(team_threads.c.thread_id).join(team_members, team_members.c.team_id == team_threads.c.team_id)
            .where(team_members.c.user_id == uid))).scalars()]
    return Holdings(threads=thread_ids, runs=[str(r.id) for r in run_rows],
                    active_runs=[str(r.id) for r in run_rows if r.status in ACTIVE],
                    busy_threads=sorted({str(r.thread_id) for r in run_rows if r.status in ACTIVE or r.finished_at is None
                                         or (r.now - r.finished_at).total_seconds() < LOCK_TTL_S}),
                    input_keys=[input_key(str(r.run_id), r.seq) for r in rounds], team_threads=heard)


async def purge_clickhouse(ch: ClickHouse, user_id: str, tombstone: str) -> None:
    """Delete the user's workload events and corpus entries; move their usage events to the
    tombstone. A DELETE is a mutation in ClickHouse, so each runs only where it has rows to
    delete. Copies an interrupted earlier attempt made are dropped before copying again."""
    params = {"u": user_id, "t": tombstone}
    for table, column in CLICKHOUSE_DELETED.items():
        if await _count(ch, table, column, user_id):
            await ch.command(f"DELETE FROM {table} WHERE {column} = {{u:String}}", params)
    if not await _count(ch, "usage_events", "user_id", user_id):
        return
    if await _count(ch, "usage_events", "user_id", tombstone):
        await ch.command("DELETE FROM usage_events WHERE user_id = {t:String}", params)
    copied = ", ".join("{t:String}" if c == "user_id" else c for c in USAGE_COLUMNS)
    await ch.command(f"INSERT INTO usage_events ({', '.join(USAGE_COLUMNS)}) "
                     f"SELECT {copied} FROM usage_events WHERE user_id = {{u:String}}", params)
    await ch.command("DELETE FROM usage_events WHERE user_id = {u:String}", params)


async def _count(ch: ClickHouse, table: str, column: str, value: str) -> int:
    rows = await ch.query(f"SELECT count() AS n FROM {table} WHERE {column} = {{v:String}}", {"v": value})
    return int(rows[0]["n"])


async def purge_redis(redis: Redis, user_id: str, held: Holdings) -> None:
    """The thread's event numbering and replay, the runs' leases, stop flags and answers, and the
    records of the user's sockets (the gateway closes those sockets once the sessions are gone)."""
    # An event being published holds its thread's lock (app.backend.events): wait for the last
    # ones of the user's runs, or they would write the replay again after it is gone.
    for thread in held.busy_threads:
        lock = redis.lock(lock_key(thread), timeout=LOCK_TTL_S, blocking_timeout=LOCK_TTL_S, sleep=0.01)
        if await lock.acquire():
            await lock.release()
    conns = [m.decode() if isinstance(m, bytes) else m for m in await redis.smembers(user_conns_key(user_id))]
    for thread in held.team_threads:
        await redis.srem(audience_key(thread), user_id)
    keys = [*(k(t) for t in held.threads for k in (replay_key, seq_key, lock_key, audience_key)),
            *(k(r) for r in held.runs for k in (lease_key, stop_key)), *held.input_keys,
            *(conn_key(c) for c in conns), user_conns_key(user_id)]
    for start in range(0, len(keys), 500):
        await redis.delete(*keys[start:start + 500])


async def purge_postgres(db: AsyncEngine, user_id: str, tombstone: str) -> int:
    """Delete the user's rows and anonymise their usage records, in one transaction; the number
    of threads deleted."""
    uid = uuid.UUID(user_id)
    async with db.begin() as conn:
        gone = await conn.execute(delete(threads).where(threads.c.owner_id == uid))
        # Cascaded with their threads already; by owner too, in case one sits in another's thread.
        await conn.execute(delete(runs).where(runs.c.owner_id == uid))
        await conn.execute(delete(messages).where(messages.c.owner_id == uid))
        await conn.execute(delete(user_plans).where(user_plans.c.user_id == uid))
        await conn.execute(delete(usage_daily).where(usage_daily.c.user_id == uid))
        await conn.execute(update(usage_records).where(usage_records.c.user_id == uid)
                           .values(user_id=uuid.UUID(tombstone), anonymised_at=func.now()))
        # Their provider keys go; what they paid stays for the books, under the tombstone as usage does.
        await conn.execute(delete(provider_connections).where(provider_connections.c.owner_id == uid))
        # Their memberships, and the teams they own (members, invitations, team listings go with them).
        await conn.execute(delete(team_members).where(team_members.c.user_id == uid))
        await conn.execute(delete(teams).where(teams.c.owner_id == uid))
        for table in (invoices, checkout_sessions, billing_events):
            await conn.execute(update(table).where(table.c.user_id == uid).values(user_id=uuid.UUID(tombstone)))
    return gone.rowcount
