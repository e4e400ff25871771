"""The mail stand-in's settings: `MAIL_STANDIN_*` environment variables."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from standins.config import StandinSettings


class MailStandinSettings(StandinSettings):
    model_config = SettingsConfigDict(env_prefix="MAIL_STANDIN_", extra="ignore", frozen=True)
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    # SMTP AUTH (PLAIN/LOGIN) as `user` with `password` is required to send, as a real relay
    # requires it; the same password is the read API's bearer token.
    user: str = "platform"
    password: SecretStr
    smtp_port: int = Field(gt=0, lt=65536)
    # Messages kept per recipient; the oldest go first.
    keep_per_recipient: int = Field(200, gt=0)
