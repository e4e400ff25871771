"""The payment stand-in's settings: `PAYMENTS_STANDIN_*` environment variables."""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from standins.config import StandinSettings


class PaymentsStandinSettings(StandinSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_STANDIN_", extra="ignore", frozen=True)
    secret_fields: ClassVar[tuple[str, ...]] = ("api_key", "webhook_secret")

    # The platform's secret API key (bearer on /v1/* and /_standin/*).
    api_key: SecretStr
    # What every webhook is signed with (Stripe's `whsec_...`): the platform holds the same value.
    webhook_secret: SecretStr
