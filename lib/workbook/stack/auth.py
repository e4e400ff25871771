"""The platform's auth service (`python -m app.auth`), wired to the stack's PostgreSQL, Redis and OIDC.

It gets its own database (`auth`) in the stack's PostgreSQL, a key directory under its data
dir (a first key is generated there), and generated passwords for the audit role and the
service clients. The `password` the stack hands it is the secret of the `workbook` service
client, which may ask for every scope. Its OIDC client is registered with the stack's provider
for this instance's callback URL, so the provider holds auth to the redirect URI it really has.
"""

from __future__ import annotations

import json
import sys

from workbook.stack.mail import smtp_env
from workbook.stack.oidc import register_client
from workbook.stack.platform_config import auth_env
from workbook.stack.tracing import tracing_env
from workbook.stack.postgres import ensure_database
from workbook.stack.redis import SENTINELS
from workbook.stack.redis import platform_env as redis_env
from workbook.stack.service import Launch, PlatformService
from workbook.stack.state import Paths, stack_secret

DATABASE = "auth"
# The workbook's own client checks introspection and the backend's scoped service endpoints.
WORKBOOK_SCOPES = ["auth:introspect", "backend:threads:read"]


class AuthService(PlatformService):
    name = "auth"
    user = "workbook"  # the service client whose secret the stack hands out as auth's password
    depends_on = ("postgres", "redis", "oidc", "mail", *SENTINELS)
    start_timeout_s = 90.0
    database_env = "AUTH_DATABASE_URL"
    # Seeded into the database, and (audit role) into the PostgreSQL cluster, at startup.
    shared_state_env = ("AUTH_SERVICE_CLIENTS", "AUTH_AUDIT_DB_USER", "AUTH_AUDIT_DB_PASSWORD")

    def scratch_env(self, suffix: str) -> dict[str, str]:
        return {"AUTH_AUDIT_DB_USER": f"auth_audit_{suffix}"}

    def scratch_cleanup(self, suffix: str) -> list[str]:
        return [f'DROP ROLE IF EXISTS "auth_audit_{suffix}"']

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        pg, _, oidc, mail, *_ = self.dependencies(paths)
        pg_password = stack_secret(paths, "postgres")
        ensure_database(pg.url, pg_password, DATABASE)
        data = paths.data(self.name)
        (data / "keys").mkdir(parents=True, exist_ok=True)
        base = self.url(port)
        callback = f"{base}/auth/oidc/callback"
        oidc_client_id, oidc_client_secret = register_client(oidc.url, stack_secret(paths, "oidc"), "platform-auth",
                                                             callback)
        clients = {
            "workbook": {"secret": password, "scopes": WORKBOOK_SCOPES},
            "backend": {"secret": stack_secret(paths, "auth-client-backend"), "scopes": ["auth:introspect"]},
        }
        env = {
            # The limits and clocks local params expect (token lifetime, sessions, login rate, lockout,
            # key activation) come first.
            **auth_env(),
            **tracing_env(paths, "AUTH_"),
            "AUTH_ENV": "local",
            "AUTH_DATABASE_URL": pg.url.rsplit("/", 1)[0] + f"/{DATABASE}",
            "AUTH_DATABASE_PASSWORD": pg_password,
            "AUTH_AUDIT_DB_PASSWORD": stack_secret(paths, "auth-audit-db"),
            **redis_env(paths, "AUTH_"),
            "AUTH_ISSUER": base,
            "AUTH_KEY_DIR": str(data / "keys"),
            "AUTH_GENERATE_KEYS": "true",
            "AUTH_OIDC_PROVIDER_URL": oidc.url,
            "AUTH_OIDC_CLIENT_ID": oidc_client_id,
            "AUTH_OIDC_CLIENT_SECRET": oidc_client_secret,
            "AUTH_OIDC_REDIRECT_URI": callback,
            "AUTH_SERVICE_CLIENTS": json.dumps(clients),
            # Everything reaches it from 127.0.0.1; checks name their client IP with X-Forwarded-For.
            "AUTH_TRUSTED_PROXIES": json.dumps(["127.0.0.1"]),
            # Verification and password-reset emails go through the SMTP stand-in.
            **smtp_env("AUTH_", mail.url, stack_secret(paths, "mail")),
        }
        return Launch(argv=[sys.executable, "-m", "app.auth", "--host", "127.0.0.1", "--port", str(port)], env=env)
