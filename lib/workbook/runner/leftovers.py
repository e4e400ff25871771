"""The leftovers sweep: after a run, what it left behind in the stores, and which checks made it.

Everything a check makes carries its namespace (`ck.ns`, `wb_<run id>_<section>_<check>`): keys,
tables, thread titles, and the emails of the users it registers; what those users own in the
backend and ClickHouse carries their id. A check removes all of it when it ends (`ck.defer`;
users are deleted through the API, which deletes their data everywhere). After the last notebook
the sweep looks for what is still there:

- PostgreSQL, every database the env's login may open: tables named in the run's namespace,
  rows with a text column starting with it (an email, a title, an OIDC subject), rows whose
  `user_id` / `owner_id` is one of the run's users;
- Redis: keys naming the namespace or a run user's id, and the records that hold a run user's
  id inside (a session's or a socket's hash, a thread's replayed events, a stream's entries);
- ClickHouse, the env's database: tables named in the namespace, rows with a String column
  starting with it or a `user_id` / `owner_id` of a run user.

The run's users are those whose `register` or `oidc_login` audit rows carry the namespace: auth's
audit log is append-only, so it still names users whose account is gone while data of theirs
stayed. Kept by design and not counted: the audit log itself, and the usage records of deleted
users (the bill, anonymised to a tombstone id: no longer anyone's).

Each find is named by the checks whose namespace it carries (a user's data by its user's email);
a namespace cut short (an email's local part holds 54 characters) names every check it fits.
The sweep only reads, on every env. A store the params give no access to (or that refuses the
login) is skipped, with the reason. Deleting an account finishes in the backend a moment after
auth answers, so a sweep that finds something looks again, until nothing is left or nothing
went for SETTLE_S.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from workbook.checks import namespace
from workbook.clients import clickhouse, postgres, redis
from workbook.errors import WorkbookError
from workbook.params import Env
from workbook.results import Leftover, LeftoverReport, StoreSweep

# Longer than the backend takes to delete a user's data after auth deleted the account (it
# retries every second while a user's runs are stopping); short enough to end a red run soon.
SETTLE_S = 30.0
SETTLE_MAX_FACTOR = 6
LOOK_AGAIN_S = 0.5
# Rows read per table: leftovers are counted and named, not exported.
ROWS_MAX = 10_000
KEYS_BATCH = 1000

# Append-only by design: they outlive the users and rows they mention (auth's audit_log, the
# backend's data_audit).
KEPT_TABLES = {"audit_log", "data_audit"}
USER_COLUMNS = ("user_id", "owner_id")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TOKEN = re.compile(r"[a-z0-9_]+")
# Redis values that hold a user's id: a hash's field, or any text of a sorted set's or stream's entries.
_HASH_USER_FIELD = "user_id"


@dataclass
class RunScope:
    """What belongs to one run: its namespace, and who owns which part of it."""

    prefix: str  # namespace(run id): everything the run names starts with it
    owners: list[tuple[str, str]]  # (namespace, label): a check's namespace and id, or a notebook's
    users: dict[str, str] = field(default_factory=dict)  # user id -> email, of users the run created

    def who(self, text: str) -> list[str]:
        """The checks (or notebooks' shared fixtures) whose namespace `text` carries."""
        low = text.lower()
        at = low.find(self.prefix)
        if at < 0:
            return []
        token = _TOKEN.match(low, at)
        assert token is not None
        ns = token.group()
        exact = [label for space, label in self.owners if space == ns]
        if exact:
            return exact
        return sorted({label for space, label in self.owners if space.startswith(ns) or ns.startswith(space)})

    def who_user(self, user_id: str) -> list[str]:
        return self.who(self.users.get(user_id, ""))


def owners(run_id: str, checks: Iterable[tuple[str, str, str]], notebooks: Iterable[str]) -> list[tuple[str, str]]:
    """(namespace, label) for each check (check id, section, check name) of a run, and for each
    notebook's shared fixtures (`wb.shared`: `<notebook> (a shared fixture)`)."""
    out = [(namespace(run_id, section, name), check_id) for check_id, section, name in checks]
    out += [(namespace(run_id, nb) + "_", f"{nb} (a shared fixture)") for nb in notebooks]
    return out


class Finds:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Leftover] = {}

    def add(self, store: str, where: str, checks: list[str], example: str, count: int = 1) -> None:
        item = self.items.setdefault((store, where), Leftover(store=store, where=where, count=0, example=example))
        item.count += count
        item.checks = sorted(set(item.checks) | set(checks))

    def of(self, store: str) -> int:
        return sum(i.count for (s, _), i in self.items.items() if s == store)


def sweep(env: Env, scope: RunScope, settle_s: float = SETTLE_S) -> LeftoverReport:
    """Sweep every store the env gives access to for what `scope`'s run left (reads only)."""
    return asyncio.run(_settled(env, scope, settle_s))


async def _settled(env: Env, scope: RunScope, settle_s: float) -> LeftoverReport:
    """Look until nothing is left, or nothing went for `settle_s`: deletions queue behind each
    other (a user's ClickHouse rows wait for the mutations before them), so a backlog that is
    going down is waited for, up to SETTLE_MAX_FACTOR x settle_s in all."""
    start = time.monotonic()
    deadline, fewest = start + settle_s, None
    while True:
        report = await _once(env, scope)
        now = time.monotonic()
        if fewest is not None and report.total < fewest:
            deadline = min(now + settle_s, start + SETTLE_MAX_FACTOR * settle_s)
        fewest = report.total if fewest is None else min(fewest, report.total)
        if report.total == 0 or now >= deadline:
            return report
        await asyncio.sleep(LOOK_AGAIN_S)


async def _once(env: Env, scope: RunScope) -> LeftoverReport:
    finds = Finds()
    stores = [await _postgres(env, scope, finds), await _redis(env, scope, finds),
              await asyncio.to_thread(_clickhouse, env, scope, finds)]
    for s in stores:
        s.found = finds.of(s.store)
    return LeftoverReport(stores=stores, items=sorted(finds.items.values(), key=lambda i: (i.store, i.where)))


def _skipped(store: str, env: Env, service: str) -> StoreSweep | None:
    if service not in env.services:
        return StoreSweep(store=store, swept=False, reason=f"env '{env.name}' has no {service} service in its params")
    return None


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- PostgreSQL -----------------------------------------------------------------------------------

async def _postgres(env: Env, scope: RunScope, finds: Finds) -> StoreSweep:
    if skipped := _skipped("postgres", env, "postgres"):
        return skipped
    try:
        main = await postgres.connect(env)
    except WorkbookError as e:
        return StoreSweep(store="postgres", swept=False, reason=str(e))
    notes: list[str] = []
    conns: dict[str, asyncpg.Connection] = {}
    try:
        names = [r["datname"] for r in await main.fetch(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")]
        for name in names:
            try:
                conns[name] = await postgres.connect(env, database=name)
            except WorkbookError:
                notes.append(f"database {name} not readable with the env's login")
        like = _like(scope.prefix)
        for conn in conns.values():
            scope.users.update(await _run_users(conn, like))
        for name, conn in conns.items():
            await _postgres_database(name, conn, scope, like, finds, notes)
    finally:
        for conn in (main, *conns.values()):
            await conn.close()
    return StoreSweep(store="postgres", swept=True, reason="; ".join(notes))


async def _run_users(conn: asyncpg.Connection, like: str) -> dict[str, str]:
    """Users the run created, as auth's audit log (and users table) in this database name them."""
    found: dict[str, str] = {}
    for sql in ("SELECT DISTINCT user_id::text AS id, email FROM audit_log WHERE event IN ('register', 'oidc_login') "
                "AND user_id IS NOT NULL AND email ILIKE $1 ESCAPE '\\'",
                "SELECT id::text AS id, email FROM users WHERE email ILIKE $1 ESCAPE '\\'"):
        try:
            found.update({r["id"]: r["email"] for r in await conn.fetch(sql, like)})
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError, asyncpg.InsufficientPrivilegeError):
            continue
    return found


async def _postgres_database(db: str, conn: asyncpg.Connection, scope: RunScope, like: str, finds: Finds,
                             notes: list[str]) -> None:
    for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename ILIKE $1 ESCAPE '\\'", like):
        finds.add("postgres", f"{db}: tables in the run's namespace", scope.who(r["tablename"]), r["tablename"])
    columns = await conn.fetch(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position")
    tables: dict[str, list[tuple[str, str]]] = {}
    for c in columns:
        if c["table_name"] in KEPT_TABLES or c["table_name"].startswith(scope.prefix):
            continue
        if c["data_type"] in ("text", "character varying"):
            tables.setdefault(c["table_name"], []).append((c["column_name"], "text"))
        elif c["data_type"] == "uuid" and c["column_name"] in USER_COLUMNS:
            tables.setdefault(c["table_name"], []).append((c["column_name"], "user"))
    users = list(scope.users)
    for table, cols in tables.items():
        args: list[Any] = []
        conds = []
        for n, kind in cols:
            value = like if kind == "text" else users
            if value not in args:
                args.append(value)
            at = args.index(value) + 1
            conds.append(f"{_ident(n)} ILIKE ${at} ESCAPE '\\'" if kind == "text" else f"{_ident(n)} = ANY(${at}::uuid[])")
        sql = (f"SELECT {', '.join(f'{_ident(n)}::text' for n, _ in cols)} FROM {_ident(table)} "
               f"WHERE {' OR '.join(conds)} LIMIT {ROWS_MAX}")
        try:
            rows = await conn.fetch(sql, *args)
        except asyncpg.InsufficientPrivilegeError:
            notes.append(f"{db}.{table} not readable with the env's login")
            continue
        for row in rows:
            column, checks, example = _postgres_owner(row, cols, scope)
            finds.add("postgres", f"{db}.{table} ({column})", checks, example)


def _postgres_owner(row: Any, cols: list[tuple[str, str]], scope: RunScope) -> tuple[str, list[str], str]:
    """Which column made the row a leftover, the checks it names, and an example value."""
    for (name, kind), value in zip(cols, row):
        if value is None:
            continue
        if kind == "text" and scope.prefix in value.lower():
            return name, scope.who(value), value[:120]
        if kind == "user" and value in scope.users:
            return name, scope.who_user(value), f"{value} ({scope.users[value]})"
    return cols[0][0], [], ""


# -- Redis ----------------------------------------------------------------------------------------

async def _redis(env: Env, scope: RunScope, finds: Finds) -> StoreSweep:
    if skipped := _skipped("redis", env, "redis"):
        return skipped
    r = redis.client(env)
    try:
        unnamed: list[str] = []
        async for key in r.scan_iter(count=KEYS_BATCH):
            if not _redis_by_name(key, scope, finds):
                unnamed.append(key)
        for start in range(0, len(unnamed), KEYS_BATCH):
            await _redis_by_value(r, unnamed[start:start + KEYS_BATCH], scope, finds)
    except (OSError, ConnectionError, TimeoutError) as e:
        return StoreSweep(store="redis", swept=False, reason=f"redis at {env.service('redis').host} did not answer: {e}")
    except Exception as e:  # redis-py's errors (authentication, a refused command) say why
        if type(e).__module__.startswith("redis"):
            return StoreSweep(store="redis", swept=False, reason=f"redis refused the sweep: {type(e).__name__}: {e}")
        raise
    finally:
        await r.aclose()
    return StoreSweep(store="redis", swept=True)


def _shape(key: str, scope: RunScope) -> str:
    """A key with its ids and namespace replaced by `*`, so finds group by kind."""
    shaped = _UUID.sub("*", key)
    at = shaped.lower().find(scope.prefix)
    if at >= 0:
        token = _TOKEN.match(shaped.lower(), at)
        assert token is not None
        shaped = shaped[:at] + "<namespace>" + shaped[token.end():]
    return shaped


def _redis_by_name(key: str, scope: RunScope, finds: Finds) -> bool:
    if scope.prefix in key.lower():
        finds.add("redis", f"keys {_shape(key, scope)}", scope.who(key), key)
        return True
    mine = [u for u in _UUID.findall(key) if u in scope.users]
    if mine:
        finds.add("redis", f"keys {_shape(key, scope)}", scope.who_user(mine[0]), key)
        return True
    return False


async def _redis_by_value(r: Any, keys: list[str], scope: RunScope, finds: Finds) -> None:
    async with r.pipeline(transaction=False) as p:
        for key in keys:
            p.type(key)
        kinds = await p.execute()
    readable = [(k, t) for k, t in zip(keys, kinds) if t in ("hash", "zset", "stream")]
    async with r.pipeline(transaction=False) as p:
        for key, kind in readable:
            if kind == "hash":
                p.hget(key, _HASH_USER_FIELD)
            elif kind == "zset":
                p.zrange(key, 0, 0)
            else:
                p.xrange(key, count=ROWS_MAX)
        values = await p.execute()
    for (key, kind), value in zip(readable, values):
        if kind == "stream":
            for _, fields in value:
                text = json.dumps(fields)
                for user in (u for u in _UUID.findall(text) if u in scope.users):
                    finds.add("redis", f"entries of stream {key}", scope.who_user(user), f"{key}: {user}")
            continue
        text = value if isinstance(value, str) else json.dumps(value or [])
        user = next((u for u in _UUID.findall(text or "") if u in scope.users), None)
        if user is not None:
            finds.add("redis", f"keys {_shape(key, scope)} (holding a run user's id)", scope.who_user(user), key)


# -- ClickHouse -----------------------------------------------------------------------------------

def _clickhouse(env: Env, scope: RunScope, finds: Finds) -> StoreSweep:
    if skipped := _skipped("clickhouse", env, "clickhouse"):
        return skipped
    try:
        ch = clickhouse.client(env, autogenerate_session_id=False)
    except WorkbookError as e:
        return StoreSweep(store="clickhouse", swept=False, reason=str(e))
    try:
        _clickhouse_tables(ch, scope, finds)
    except ClickHouseError as e:
        return StoreSweep(store="clickhouse", swept=False,
                          reason=f"clickhouse refused the sweep: {str(e).splitlines()[0][:200]}")
    finally:
        ch.close()
    return StoreSweep(store="clickhouse", swept=True)


def _clickhouse_tables(ch: Client, scope: RunScope, finds: Finds) -> None:
    columns = ch.query("SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
                       "ORDER BY table, position").result_rows
    views = {t for (t,) in ch.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                    "AND engine LIKE '%View'").result_rows}
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, name, kind in columns:
        if table in views:
            continue
        if table.startswith(scope.prefix):
            tables.setdefault(table, [])
            continue
        if kind in ("String", "LowCardinality(String)"):
            tables.setdefault(table, []).append((name, "user" if name in USER_COLUMNS else "text"))
    users = list(scope.users)
    for table, cols in tables.items():
        if table.startswith(scope.prefix):
            finds.add("clickhouse", "tables in the run's namespace", scope.who(table), table)
            continue
        if not cols:
            continue
        # Bound by the client (`%(u)s`), not the server (`{u:Array(String)}`): server-side
        # parameters past a size go as multipart form data, which not every ClickHouse-speaking
        # service takes (the local stand-in refuses it), and a run's users pass that size.
        conds = [f"startsWith(lower(`{n}`), %(p)s)" for n, _ in cols]
        conds += [f"`{n}` IN %(u)s" for n, kind in cols if kind == "user" and users]
        rows = ch.query(f"SELECT {', '.join(f'`{n}`' for n, _ in cols)} FROM `{table}` WHERE {' OR '.join(conds)} "
                        f"LIMIT {ROWS_MAX}", parameters={"p": scope.prefix, "u": users}).result_rows
        for row in rows:
            column, checks, example = _clickhouse_owner(row, cols, scope)
            finds.add("clickhouse", f"{table} ({column})", checks, example)


def _clickhouse_owner(row: tuple[Any, ...], cols: list[tuple[str, str]], scope: RunScope) -> tuple[str, list[str], str]:
    for (name, kind), value in zip(cols, row):
        if kind == "user" and value in scope.users:
            return name, scope.who_user(value), f"{value} ({scope.users[value]})"
        if isinstance(value, str) and value.lower().startswith(scope.prefix):
            return name, scope.who(value), value[:120]
    return cols[0][0], [], ""
