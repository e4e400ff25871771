"""How the backend learns that auth deleted an account: an entry in a Redis stream.

Auth appends `UserDeleted` to `STREAM` before the account's deletion commits; the backend reads
the stream through the consumer group `GROUP`, in which every backend instance is a consumer.
Each entry goes to one instance and stays pending until that instance has deleted the user's
data and acknowledges it; an entry whose instance died is claimed by another one, and a group
remembers where it stopped, so a backend that was down when the account went catches up when
it starts. Auth never needs to know where the backend runs, and an outage of the backend does
not stop anyone from deleting their account.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

STREAM = "platform:user_deletions"
GROUP = "backend"


@dataclass(frozen=True)
class UserDeleted:
    user_id: str
    # Takes the user's place in what is kept (the bill), so those rows still add up per account
    # without naming anyone: random, and recorded nowhere else once the entry is gone.
    tombstone: str
    deleted_at: float  # epoch seconds

    def fields(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes] | dict[str, str]) -> UserDeleted:
        data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in fields.items()}
        return cls(user_id=data["user_id"], tombstone=data["tombstone"], deleted_at=float(data["deleted_at"]))
