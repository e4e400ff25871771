"""Startup validation: outside `local`, refuse to run on missing or weak secrets and keys.

Every problem is collected and reported by setting name, so one failed start shows them all.
"""

from __future__ import annotations

import stat

from app.auth.keys import KeyRing, KeyRingError
from app.common import environment
from app.common.settings import AuthSettings
from app.common.validation import check_secret as _secret, url_password

MIN_SERVICE_SECRET_LEN = 32
# OWASP's argon2id floor (Password Storage Cheat Sheet): 19 MiB of memory with 2 passes, or
# more memory with fewer passes; anything cheaper is for local test stacks only.
ARGON2_FLOORS = ((19456, 2), (47104, 1))


def key_problems(settings: AuthSettings) -> list[str]:
    ring = KeyRing(settings.key_dir)
    try:
        key = ring.active()
    except (KeyRingError, OSError, ValueError) as e:
        return [f"AUTH_KEY_DIR ({settings.key_dir}): {e}"]
    mode = (settings.key_dir / f"{key.kid}.pem").stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [f"AUTH_KEY_DIR: private key {key.kid}.pem is readable by group/others (chmod 600)"]
    return []


def problems(settings: AuthSettings) -> list[str]:
    """What stops this configuration from running in its environment (nothing, in local)."""
    found: list[str] = environment.problems(settings)  # in every env, local included
    if settings.is_local:
        return found
    if settings.generate_keys:
        found.append("AUTH_GENERATE_KEYS is a dev-only switch (provision keys and set it false)")
    if not settings.generate_keys:
        found += key_problems(settings)
    _secret(found, "AUTH_DATABASE_PASSWORD", settings.secret("database_password")
            or url_password(settings.database_url))
    _secret(found, "AUTH_REDIS_PASSWORD", settings.secret("redis_password"))
    _secret(found, "AUTH_AUDIT_DB_PASSWORD", settings.secret("audit_db_password"))
    if settings.oidc_provider_url:
        if not settings.oidc_client_id:
            found.append("AUTH_OIDC_CLIENT_ID is missing (AUTH_OIDC_PROVIDER_URL is set)")
        _secret(found, "AUTH_OIDC_CLIENT_SECRET", settings.secret("oidc_client_secret"))
    for cid, client in settings.service_clients.items():
        _secret(found, f"AUTH_SERVICE_CLIENTS[{cid}].secret", client.secret.get_secret_value(),
                MIN_SERVICE_SECRET_LEN)
    m, t = settings.password_memory_kib, settings.password_time_cost
    if not any(m >= floor_m and t >= floor_t for floor_m, floor_t in ARGON2_FLOORS):
        found.append(f"AUTH_PASSWORD_MEMORY_KIB/AUTH_PASSWORD_TIME_COST: argon2id at {m} KiB x {t} passes "
                     "is below OWASP's minimum (19456 KiB x 2, or 47104 KiB x 1) outside local")
    if "*" in settings.cors_origins:
        found.append("AUTH_CORS_ORIGINS must list origins, not '*'")
    if settings.env in ("staging", "production") and not settings.issuer.startswith("https://"):
        found.append(f"AUTH_ISSUER must be an https URL in {settings.env}")
    return found
