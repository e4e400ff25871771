"""Deleting an account: everything auth holds of the user, and the event that makes the
backend delete its share (`app.common.user_deletions`).

Order matters. The sessions end first, so from then on neither auth nor the backend accepts a
token of the user and nothing new of theirs is written while the rest goes. The event is
appended inside the transaction that deletes the row, before it commits: if Redis refuses it,
the deletion rolls back and the caller gets a 503 (nothing is half gone); published after the
commit, a failure would lose the event and leave the backend's share behind for good. If the
commit fails after the event went out, the backend deletes data of an account that still
exists, which its owner asked for; deleting again finishes the job (both sides are idempotent).

Kept on purpose: the audit log (append-only, it has no FK to users), and on the backend's side
the usage records (the bill), anonymised.
"""

from __future__ import annotations

import time
import uuid

from app.auth import users
from app.auth.audit import Actor
from app.auth.context import Context
from app.common.errors import ApiError
from app.common.user_deletions import STREAM, UserDeleted


async def delete_user(c: Context, user: users.User, who: Actor, by: str, how: str) -> UserDeleted:
    """Delete `user`'s account (row, sessions, refresh tokens, OIDC identities, login counters)
    and publish the event for the backend; audited with `by` (who asked) and `how` (self/admin)."""
    uid = str(user.id)
    ended = await c.sessions.end_all(uid)
    event = UserDeleted(user_id=uid, tombstone=str(uuid.uuid4()), deleted_at=time.time())
    async with c.db.begin() as conn:
        if not await users.delete(conn, user.id):
            raise ApiError(404, "not_found", "no such user")
        await c.redis.xadd(STREAM, event.fields())
    await c.limiter.forget(user.email)
    await c.audit.record("user_deleted", who, user.id, user.email, by=by, how=how, sessions_ended=len(ended))
    return event


def accepted(event: UserDeleted) -> dict[str, str]:
    """The answer to a deletion: the account is gone; the backend deletes its share on its own."""
    return {"id": event.user_id, "account": "deleted", "platform_data": "deletion queued"}
