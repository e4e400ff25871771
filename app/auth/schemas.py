"""Request bodies; limits here keep oversized fields from reaching argon2 or the database."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.auth.roles import Role

EMAIL = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(_Body):
    email: str = Field(pattern=EMAIL, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(_Body):
    refresh_token: str = Field(min_length=1, max_length=4096)


class PasswordChange(_Body):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class AccountDeletion(_Body):
    # The account's password: who deletes an account proves again that it is theirs.
    password: str | None = Field(default=None, min_length=1, max_length=256)


class RoleChange(_Body):
    role: Role


class ServiceTokenRequest(_Body):
    client_id: str = Field(min_length=1, max_length=64)
    client_secret: str = Field(min_length=1, max_length=256)
    scope: str | None = Field(default=None, max_length=1024)


class IntrospectRequest(_Body):
    token: str = Field(min_length=1, max_length=4096)
