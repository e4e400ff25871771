"""params/<env>.yaml -> a validated `Env`, with secrets read from environment variables.

Params files hold endpoints, switches and thresholds, never secret values: a service names
the variable that holds its password (`password_env`) and the value is read here, at run
time, so it never travels as a papermill parameter or lands in an executed notebook.
An env with `stack: embedded` takes its endpoints and passwords from the running local
stack instead, because that stack picks free ports and generates its own passwords.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from workbook.errors import ConfigError

SECRET_WORDS = ("password", "secret", "token", "api_key", "private_key")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def project_root() -> Path:
    """The checkout that holds params/ and notebooks/ (WORKBOOK_ROOT overrides)."""
    if "WORKBOOK_ROOT" in os.environ:
        return Path(os.environ["WORKBOOK_ROOT"]).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "params").is_dir():
        return here
    return Path.cwd().resolve()


class Service(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    user: str | None = None
    database: str | None = None
    password_env: str | None = None
    # Filled by resolve_secrets() or by the embedded stack, never by the params file.
    password: SecretStr | None = Field(default=None, exclude=True)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int | None:
        return urlsplit(self.url).port

    def secret(self) -> str | None:
        return self.password.get_secret_value() if self.password else None


class Timeouts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connect_s: float = 5.0
    request_s: float = 30.0
    # A platform service starts, or refuses to with a message, within this.
    startup_s: float = 30.0


class Load(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    max_concurrency: int = 10
    max_requests: int = 500
    max_duration_s: float = 30.0


class Env(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    production: bool = False
    destructive: bool = False
    stack: Literal["embedded", "none"] = "none"
    # Host patterns this env's services must live on; preflight fails a host outside them.
    allowed_hosts: list[str] = []
    services: dict[str, Service] = {}
    timeouts: Timeouts = Timeouts()
    latency_budget_ms: dict[str, float] = {}
    clock_skew_max_s: float = 2.0
    load: Load = Load()
    # What the platform's public configuration must say (e.g. `expect.auth` vs `/auth/config`):
    # a deployment drifting from what the team decided shows up as a failed check.
    expect: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _production_is_safe(self) -> Env:
        if self.is_production and (self.destructive or self.load.enabled):
            raise ValueError("a production env may not enable destructive or load checks")
        return self

    @property
    def is_production(self) -> bool:
        return self.production or "prod" in self.name.lower()

    def allows(self, kind: Literal["destructive", "load"]) -> bool:
        if self.is_production:
            return False
        return self.destructive if kind == "destructive" else self.load.enabled

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            have = ", ".join(sorted(self.services)) or "none"
            raise ConfigError(f"env '{self.name}' has no service '{name}' (it has: {have})") from None

    def host_allowed(self, host: str) -> bool:
        return any(fnmatch.fnmatch(host, pattern) for pattern in self.allowed_hosts)


def available_envs(params_dir: Path) -> list[str]:
    return sorted(p.stem for p in params_dir.glob("*.yaml"))


def _read_yaml(name: str, params_dir: Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = params_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_envs(params_dir)) or "none"
        raise ConfigError(f"unknown env '{name}': no {path} (available: {known})")
    if name in seen:
        raise ConfigError(f"params: 'extends' loops: {' -> '.join((*seen, name))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of keys, not {type(data).__name__}")
    _refuse_secret_values(data, path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merge(_read_yaml(str(parent), params_dir, (*seen, name)), data)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _refuse_secret_values(data: Any, path: Path, where: str = "") -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{where}.{key}" if where else str(key)
            secret_like = any(w in str(key).lower() for w in SECRET_WORDS)
            if secret_like and isinstance(value, str) and not str(key).endswith("_env"):
                raise ConfigError(
                    f"{path}: '{here}' looks like a secret value; params hold only the name of "
                    f"the environment variable that has it ('{key}_env: SOME_VAR')"
                )
            _refuse_secret_values(value, path, here)


def _validation_line(e: ValidationError, name: str) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"params/{name}.yaml: {where}: {err['msg']}"


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


def load_env(name: str, params_dir: Path | None = None, resolve: bool = True) -> Env:
    """Load and validate one env; `resolve=False` skips secrets and the stack (for listing)."""
    params_dir = params_dir or project_root() / "params"
    if not name:
        raise ConfigError("no env given: pass env='local' (available: "
                          f"{', '.join(available_envs(params_dir))})")
    data = _read_yaml(name, params_dir)
    data.setdefault("name", name)
    try:
        env = Env.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_validation_line(e, name)) from None
    if resolve:
        if env.stack == "embedded":
            from workbook.stack.state import embedded_services

            env.services = {**env.services, **embedded_services(params_dir.parent)}
        resolve_secrets(env)
    return env
