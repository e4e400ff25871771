"""The effective configuration of a service as an operator needs to see it: every non-secret
value with where it came from, secrets as set/unset only, and a hash two instances of one
service compare to know they run the same configuration."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from pydantic import SecretStr

from app.common.settings import COMMON_SECRET_FIELDS, RELOADABLE, _ServiceSettings, config_file_path

# Per instance by design: they would make two instances of one configuration look different.
PER_INSTANCE = frozenset({"instance_id"})


def _file_values(prefix: str) -> dict[str, Any]:
    path = config_file_path(prefix)
    return json.loads(path.read_text()) if path is not None and path.exists() else {}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, SecretStr):
        return "set"
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _is_secret(settings: _ServiceSettings, name: str) -> bool:
    return name in type(settings).secret_fields or name in COMMON_SECRET_FIELDS or name == "service_clients"


def source_of(settings: _ServiceSettings, name: str, reloaded: set[str], file_values: dict[str, Any]) -> str:
    """default < file < env < env_file, then `reloaded` for a value changed at run time."""
    prefix = str(type(settings).model_config.get("env_prefix", ""))
    if name in reloaded:
        return "reloaded"
    if _is_secret(settings, name) and os.environ.get(f"{prefix}{name.upper()}_FILE"):
        return "env_file"
    if f"{prefix}{name.upper()}" in {k.upper() for k in os.environ}:
        return "env"
    if name in file_values:
        return "file"
    return "default"


def report(settings: _ServiceSettings, service: str, reloaded: set[str] | None = None) -> dict[str, Any]:
    reloaded = reloaded or set()
    prefix = str(type(settings).model_config.get("env_prefix", ""))
    file_values = _file_values(prefix)
    values: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if _is_secret(settings, name):
            # service_clients holds secrets inside it: its ids are shown, never what they hold.
            secrets[name] = ("set" if value else "unset") if name != "service_clients" else \
                ",".join(sorted(value)) or "unset"
            continue
        values[name] = {"value": _plain(value), "source": source_of(settings, name, reloaded, file_values)}
    shared = {k: v["value"] for k, v in values.items() if k not in PER_INSTANCE}
    digest = hashlib.sha256(json.dumps({"values": shared, "secrets": secrets}, sort_keys=True).encode()).hexdigest()
    return {"service": service, "env": settings.env, "hash": digest, "values": values, "secrets": secrets,
            "per_instance": sorted(PER_INSTANCE & set(values)),
            "reloadable": [n for n in RELOADABLE if n in values], "config_file": str(config_file_path(prefix) or "")}
