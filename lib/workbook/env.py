"""The env a run talks to: params/<env>.yaml (workbook.params) with its endpoints and secrets filled in.

Secrets come from the environment variables the params name, at run time. An env with
`stack: embedded` takes its endpoints and passwords from the running local stack instead,
because that stack picks free ports and generates its own passwords.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from workbook.errors import ConfigError
from workbook.params import Env, Service, load_params
from workbook.stack.clickhouse import login_users
from workbook.stack.state import embedded_endpoints

__all__ = ["Env", "load_env", "resolve_secrets"]


def resolve_secrets(env: Env) -> None:
    for svc_name, svc in env.services.items():
        if svc.password_env and svc.password is None:
            value = os.environ.get(svc.password_env)
            if not value:
                raise ConfigError(
                    f"env '{env.name}': services.{svc_name}.password_env names "
                    f"{svc.password_env}, which is not set in the environment"
                )
            svc.password = SecretStr(value)


def load_env(name: str, params_dir: Path | None = None) -> Env:
    """Load and validate one env, ready to connect: endpoints known, secrets resolved."""
    env = load_params(name, params_dir)
    if env.stack == "embedded":
        root = (params_dir.parent if params_dir else None)
        env.services = {**env.services, **{
            name: Service(url=e.url, user=e.user, database=e.database,
                          password=SecretStr(e.password) if e.password else None)
            for name, e in embedded_endpoints(
                root, {login: ("clickhouse", user) for login, user in login_users().items()}).items()}}
    resolve_secrets(env)
    return env
