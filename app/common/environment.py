"""Environment detection: a service knows its env and refuses to start when a dependency's URL
points at another environment's hosts (a staging DSN in a local service), or when it runs in
production with a debug switch on. Problems are named by variable, never by secret."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from app.common.settings import _ServiceSettings

# Settings holding URLs of the service's dependencies, per service prefix.
DEPENDENCY_URLS = ("database_url", "redis_url", "auth_url", "clickhouse_url", "llm_base_url", "oidc_provider_url",
                   "otel_endpoint", "issuer")


def host_env(host: str, labels: dict[str, list[str]]) -> str | None:
    """The env whose label the host carries (a dot- or dash-separated part of its name), if any."""
    parts = set(re.split(r"[.\-]", host.lower()))
    for env, names in labels.items():
        if parts & {n.lower() for n in names}:
            return env
    return None


def problems(settings: _ServiceSettings) -> list[str]:
    prefix = str(type(settings).model_config.get("env_prefix", ""))
    found: list[str] = []
    for name in DEPENDENCY_URLS:
        url = getattr(settings, name, None)
        if not url:
            continue
        host = urlsplit(str(url)).hostname or ""
        other = host_env(host, settings.env_host_labels)
        if other is not None and other != settings.env:
            found.append(f"{prefix}{name.upper()} points at a {other} host ({host}) but this service runs in "
                         f"env={settings.env}")
    if settings.env == "production" and settings.debug:
        found.append(f"{prefix}DEBUG must be off in production")
    if settings.env == "production" and settings.log_level == "DEBUG":
        found.append(f"{prefix}LOG_LEVEL=DEBUG is refused in production (debug logs carry request bodies)")
    return found
