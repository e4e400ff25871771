"""The stand-in's settings: `LLM_STANDIN_*` environment variables.

The stand-in is not part of the platform under test (it replaces the model provider the
platform calls), so its settings share nothing with the platform's.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from standins.config import StandinSettings


class LlmStandinSettings(StandinSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_STANDIN_", extra="ignore", frozen=True)
    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)

    # Every /v1/* and /_standin/* request must carry it as a bearer token.
    api_key: SecretStr
    models: list[str] = ["standin-large", "standin-small"]
    # The request log is a ring: the oldest entries go first.
    log_len: int = Field(5000, gt=0)

    @field_validator("api_key")
    @classmethod
    def _present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one model")
        if any(not m.strip() for m in value) or len(set(value)) != len(value):
            raise ValueError("model names must be non-empty and distinct")
        return value
