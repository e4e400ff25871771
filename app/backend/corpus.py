"""The caller's content corpus in ClickHouse: the SQL of the corpus API. Rows are always the
owner's (`owner_id` from the token); a search is a case-insensitive substring match over title
and content that the table's n-gram index narrows to the granules that can match."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from app.common.clickhouse import ClickHouse

COLUMNS = ["entry_id", "owner_id", "title", "content", "tags", "created_at"]
SELECT = "SELECT entry_id, title, content, tags, created_at FROM corpus"
OWNED = "owner_id = {owner:String} AND entry_id = {id:String}"
# The expression the n-gram index is built on (app.common.clickhouse_schema): a search must use it.
SEARCH = "lower(concat(title, ' ', content)) LIKE {pattern:String}"


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {"entry_id": row["entry_id"], "title": row["title"], "content": row["content"], "tags": list(row["tags"]),
            "created_at": row["created_at"].replace(tzinfo=UTC).isoformat()}


def like_pattern(query: str) -> str:
    """`query` as a LIKE pattern matching it anywhere, its own % _ and \\ taken literally."""
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def create(ch: ClickHouse, owner: str, title: str, content: str, tags: list[str]) -> dict[str, Any]:
    now = datetime.now(UTC)  # stored to the millisecond (DateTime64(3)): said as stored
    row = {"entry_id": str(uuid.uuid4()), "owner_id": owner, "title": title, "content": content, "tags": tags,
           "created_at": now.replace(tzinfo=None, microsecond=now.microsecond // 1000 * 1000)}
    await ch.insert("corpus", [[row[c] for c in COLUMNS]], COLUMNS)
    return public(row)


async def get(ch: ClickHouse, owner: str, entry_id: str) -> dict[str, Any] | None:
    rows = await ch.query(f"{SELECT} WHERE {OWNED}", {"owner": owner, "id": entry_id})
    return public(rows[0]) if rows else None


async def search(ch: ClickHouse, owner: str, query: str, limit: int) -> list[dict[str, Any]]:
    rows = await ch.query(f"{SELECT} WHERE owner_id = {{owner:String}} AND {SEARCH} "
                          "ORDER BY created_at DESC, entry_id LIMIT {n:UInt32}",
                          {"owner": owner, "pattern": like_pattern(query), "n": limit})
    return [public(r) for r in rows]


async def listing(ch: ClickHouse, owner: str, limit: int) -> list[dict[str, Any]]:
    rows = await ch.query(f"{SELECT} WHERE owner_id = {{owner:String}} ORDER BY created_at DESC, entry_id "
                          "LIMIT {n:UInt32}", {"owner": owner, "n": limit})
    return [public(r) for r in rows]


async def update(ch: ClickHouse, owner: str, entry_id: str, changes: dict[str, Any]) -> None:
    """A synchronous mutation: when it returns, every reader sees the new values."""
    sets = ", ".join(f"{name} = {{{name}:{'Array(String)' if name == 'tags' else 'String'}}}" for name in changes)
    await ch.command(f"ALTER TABLE corpus UPDATE {sets} WHERE {OWNED}", {**changes, "owner": owner, "id": entry_id},
                     settings={"mutations_sync": 2})


async def delete(ch: ClickHouse, owner: str, entry_id: str) -> None:
    """A lightweight DELETE: the row is masked for every reader when this returns."""
    await ch.command(f"DELETE FROM corpus WHERE {OWNED}", {"owner": owner, "id": entry_id})
