"""Startup validation: outside `local`, refuse missing or weak secrets and unsafe switches,
each problem named by its setting."""

from __future__ import annotations

from app.common import environment
from app.common.settings import BackendSettings
from app.common.validation import check_secret, url_password


def problems(settings: BackendSettings) -> list[str]:
    found: list[str] = environment.problems(settings)  # in every env, local included
    if settings.is_local:
        return found
    # Staging may run them (the gateway checks run there too); production users must never see them.
    if settings.test_agents and settings.env == "production":
        found.append("BACKEND_TEST_AGENTS must be off in production (the probe agent reports scripted results)")
    check_secret(found, "BACKEND_DATABASE_PASSWORD", settings.secret("database_password")
                 or url_password(settings.database_url))
    check_secret(found, "BACKEND_REDIS_PASSWORD", settings.secret("redis_password"))
    check_secret(found, "BACKEND_SERVICE_CLIENT_SECRET", settings.secret("service_client_secret"), 32)
    check_secret(found, "BACKEND_LLM_API_KEY", settings.secret("llm_api_key"))
    check_secret(found, "BACKEND_CLICKHOUSE_PASSWORD", settings.secret("clickhouse_password"))
    check_secret(found, "BACKEND_CLICKHOUSE_WRITER_PASSWORD", settings.secret("clickhouse_writer_password"))
    check_secret(found, "BACKEND_CLICKHOUSE_READER_PASSWORD", settings.secret("clickhouse_reader_password"))
    if "*" in settings.cors_origins:
        found.append("BACKEND_CORS_ORIGINS must list origins, not '*'")
    if settings.env in ("staging", "production"):
        for name in ("auth_url", "issuer", "llm_base_url"):
            if not getattr(settings, name).startswith("https://"):
                found.append(f"BACKEND_{name.upper()} must be an https URL in {settings.env}")
    return found
