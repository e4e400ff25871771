"""The env a run talks to: params/<env>.yaml (workbook.params) with its endpoints and secrets filled in.

Secrets come from the environment variables the params name (`password_env`), at run time, and
so do endpoints a params file leaves to a variable (`url_env`). An env with `stack: embedded`
takes its endpoints and passwords from the running local stack instead, because that stack
picks free ports and generates its own passwords; every other env's come from its file.

`refuse_foreign_hosts` is what a run checks before its first notebook: a params file pointed at
hosts outside its `allowed_hosts` (local params at a staging host, staging params at a laptop)
must not get as far as a check, least of all a destructive one.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from workbook.errors import ConfigError
from workbook.params import Env, Service, load_params
from workbook.stack.clickhouse import login_users
from workbook.stack.state import embedded_endpoints

__all__ = ["Env", "load_env", "refuse_foreign_hosts", "resolve_secrets"]


def _variable(env: Env, where: str, name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"env '{env.name}': {where} names {name}, which is not set in the environment")
    return value


def resolve_endpoints(env: Env) -> None:
    for svc_name, svc in env.services.items():
        if svc.url_env:
            svc.url = _variable(env, f"services.{svc_name}.url_env", svc.url_env)
        if not svc.url:
            raise ConfigError(f"env '{env.name}': services.{svc_name} has no url (give url or url_env)")


def refuse_foreign_hosts(env: Env) -> None:
    """Raise ConfigError naming every service whose host is outside the env's `allowed_hosts`."""
    foreign = {name: svc.host for name, svc in env.services.items() if not env.host_allowed(svc.host)}
    if foreign:
        hosts = ", ".join(f"{name}={host}" for name, host in foreign.items())
        raise ConfigError(f"env '{env.name}': refusing to run against hosts outside allowed_hosts "
                          f"{env.allowed_hosts}: {hosts}")


def resolve_secrets(env: Env) -> None:
    for svc_name, svc in env.services.items():
        if svc.password_env and svc.password is None:
            svc.password = SecretStr(_variable(env, f"services.{svc_name}.password_env", svc.password_env))


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
    resolve_endpoints(env)
    resolve_secrets(env)
    return env
