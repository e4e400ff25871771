"""The provider's settings: `OIDC_STANDIN_*` environment variables."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from standins.config import StandinSettings


class StaticClient(BaseModel):
    secret: SecretStr
    redirect_uris: list[str] = Field(min_length=1)
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"


class OidcStandinSettings(StandinSettings):
    model_config = SettingsConfigDict(env_prefix="OIDC_STANDIN_", extra="ignore", frozen=True)
    secret_fields: ClassVar[tuple[str, ...]] = ("registration_token",)

    # Who may register clients at /register (RFC 7591's initial access token); unset: nobody.
    registration_token: SecretStr | None = None
    clients: dict[str, StaticClient] = {}
    # RFC 6749 recommends at most 10 minutes; Okta and Keycloak use 60 s.
    code_ttl_s: float = Field(60.0, gt=0, le=600)
    token_ttl_s: int = Field(3600, gt=0)

    @field_validator("registration_token")
    @classmethod
    def _present(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty when set")
        return value
