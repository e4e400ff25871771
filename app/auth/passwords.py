"""argon2id password hashing with the cost the settings give, run off the event loop.

The cost is per environment: production-grade outside local (startup refuses less, see
`app.auth.startup`), cheap but real argon2id locally, where a test run registers hundreds of
throwaway users. A stored hash carries its own parameters, so hashes made at another cost
still verify.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.common.settings import AuthSettings


class Passwords:
    def __init__(self, time_cost: int, memory_kib: int, parallelism: int):
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        # Verified when the user does not exist, so unknown and known emails take the same time.
        self._dummy = self.hasher.hash("timing-equaliser-not-a-password")

    @classmethod
    def of(cls, settings: AuthSettings) -> Passwords:
        return cls(settings.password_time_cost, settings.password_memory_kib, settings.password_parallelism)

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, stored, password)
