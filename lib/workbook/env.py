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
from workbook.params import Env, SentinelHosts, Service, load_params
from workbook.stack.clickhouse import login_users
from workbook.stack.redis import SENTINELS
from workbook.paths import project_root
from workbook.stack.state import Paths, embedded_endpoints, stack_secret

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
        if svc.sentinel and svc.sentinel.password_env and svc.sentinel.password is None:
            svc.sentinel.password = SecretStr(_variable(env, f"services.{svc_name}.sentinel.password_env",
                                                        svc.sentinel.password_env))


def embedded_sentinel(env: Env, root: Path | None, base: Path | None = None) -> None:
    """The embedded stack's Redis is watched by its Sentinels (params say the master's name):
    `services.redis.sentinel` names them, and the replica answers to the primary's password."""
    watched = env.expect.redis.sentinel
    sentinels = [env.services[n] for n in SENTINELS if n in env.services]
    if "redis" not in env.services or watched is None or not sentinels:
        return
    redis = env.services["redis"]
    if "redis_replica" in env.services:
        env.services["redis_replica"].password = redis.password
    for s in sentinels:
        s.password = SecretStr(stack_secret(Paths(root or project_root(), base), "redis_sentinel"))
    redis.sentinel = SentinelHosts(master_name=watched.master_name, hosts=[f"{s.host}:{s.port}" for s in sentinels],
                                   password=sentinels[0].password)


def load_env(name: str, params_dir: Path | None = None, stack_dir: Path | None = None) -> Env:
    """Load and validate one env, ready to connect: endpoints known, secrets resolved. An
    embedded env's endpoints are those of the stack in `stack_dir` (default: Paths' own)."""
    env = load_params(name, params_dir)
    if env.stack == "embedded":
        root = (params_dir.parent if params_dir else None)
        env.services = {**env.services, **{
            name: Service(url=e.url, user=e.user, database=e.database,
                          password=SecretStr(e.password) if e.password else None)
            for name, e in embedded_endpoints(
                root, {login: ("clickhouse", user) for login, user in login_users().items()}, stack_dir).items()}}
        embedded_sentinel(env, root, stack_dir)
    resolve_endpoints(env)
    resolve_secrets(env)
    return env
