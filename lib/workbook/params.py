"""params/<env>.yaml as typed models: what one environment is and what the checks hold it to.

Params files hold endpoints, switches, budgets and expectations, never secret values: a
service names the variable that holds its password (`password_env`) and `workbook.env` reads
it at run time, so it never travels as a papermill parameter or lands in an executed notebook.

Budgets and expectations are grouped by the notebook that reads them and have no defaults:
a params file that leaves one out fails to load, naming the key, instead of a check quietly
comparing with a number nobody chose.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from workbook.errors import ConfigError
from workbook.paths import project_root

SECRET_WORDS = ("password", "secret", "token", "api_key", "private_key")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SentinelHosts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    master_name: str
    hosts: list[str]
    password_env: str | None = None
    # Filled by workbook.env, never by a params file.
    password: SecretStr | None = Field(default=None, exclude=True)

    def secret(self) -> str | None:
        return self.password.get_secret_value() if self.password else None


class Service(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Where it answers: in the file, or (`url_env`) in an environment variable read at run time,
    # for a stack whose ports are only known once it runs.
    url: str | None = None
    url_env: str | None = None
    user: str | None = None
    database: str | None = None
    password_env: str | None = None
    # Redis only: the Sentinels that say where the primary is ({master_name, hosts: ["host:port"]});
    # without it `url` is the one server.
    sentinel: SentinelHosts | None = None
    # Filled by workbook.env (from the variable, or from the embedded stack), never by a params file.
    password: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _one_url(self) -> Service:
        if self.url is not None and self.url_env is not None:
            raise ValueError("give url or url_env, not both")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url or "").hostname or ""

    @property
    def port(self) -> int | None:
        return urlsplit(self.url or "").port

    def secret(self) -> str | None:
        return self.password.get_secret_value() if self.password else None


class Timeouts(Strict):
    connect_s: float
    request_s: float
    # A platform service starts, or refuses to with a message, within this.
    startup_s: float


class Load(Strict):
    enabled: bool
    max_concurrency: int = Field(gt=0)
    max_requests: int = Field(gt=0)
    max_duration_s: float = Field(gt=0)
    # Locust worker processes one load run may start beside its master (0: Locust in one process);
    # with master_host, the workers that master must have connected before a run starts.
    workers: int = Field(0, ge=0)
    # A Locust master the team runs (host:port of its web UI, started with the workbook's
    # locustfile and --class-picker): runs go to it and its workers instead of processes here.
    master_host: str | None = None


# -- budgets: latency limits in milliseconds, per notebook -------------------------------------

class PreflightBudgets(Strict):
    postgres_ms: float
    redis_ms: float
    clickhouse_ms: float
    oidc_ms: float

    def of(self, service: str) -> float:
        return float(getattr(self, f"{service}_ms"))


class AuthBudgets(Strict):
    # an open circuit breaker answers without waiting for the dead peer
    breaker_fail_fast_ms: float


class WsBudgets(Strict):
    broadcast_p50_ms: float
    broadcast_p99_ms: float
    delivery_p99_ms: float
    heartbeat_rtt_p99_ms: float
    stop_run_ms: float


class AgentBudgets(Strict):
    step_p95_ms: float
    first_event_p99_ms: float
    run_p99_ms: float
    # an open model breaker fails a run without waiting for the provider
    breaker_fail_fast_ms: float
    # a stop during a model call with under 0.8 s left ends the run cancelled, at the next step
    stop_cancel_ms: float


class ClickHouseBudgets(Strict):
    # a 10k-row batch through the ingestion API, answered
    ingest_10k_ms: float
    # each analytics endpoint at the 95th percentile, over a million rows of one user
    analytics_p95_ms: float
    # what /health/ready may report as ClickHouse's latency
    ready_latency_ms: float
    # active parts one ingestion batch may leave behind (1: a batch is one INSERT)
    parts_per_batch: int


class DatabaseBudgets(Strict):
    # what /health/ready may report as PostgreSQL's latency
    ready_latency_ms: float
    # the hot API reads (thread listing, a page of messages) over 100k+ rows of one user
    hot_read_p50_ms: float
    hot_read_p95_ms: float
    # a request refused by a saturated pool is answered within the pool timeout plus this
    pool_refusal_slack_ms: float
    # with PostgreSQL down, a request is refused (503) within this
    down_refusal_ms: float


class RedisBudgets(Strict):
    # a request that finds the platform's Redis pool exhausted is refused within this
    pool_exhausted_ms: float
    # from the primary's death to logins answering again through the promoted replica
    failover_ms: float
    # from a signing key's retirement to every backend refusing its tokens (auth's announcement)
    key_retired_ms: float


class ConfigBudgets(Strict):
    # a request while a dependency is down or slow: answered (a specific 503 or a degraded 200)
    # within this, never a timeout
    fail_fast_ms: float
    # a hot-reloaded setting in effect on every instance
    reload_converge_ms: float
    # a request's spans readable in otel_traces
    trace_export_ms: float
    # a killed dependency back and every service ready again
    recovery_ms: float


class E2eBudgets(Strict):
    """Each step of a first-time user's journey, as the user waits for it."""

    register_ms: float
    # from registration answered to the verification email in the mailbox
    email_delivery_ms: float
    verify_ms: float
    login_ms: float
    create_thread_ms: float
    # from the run's start over WebSocket to its first event, and to its final report
    first_event_ms: float
    run_ms: float
    # checkout session created; the payment's webhook applied (plan upgraded)
    checkout_ms: float
    webhook_ms: float


class LoadBudgets(Strict):
    # every endpoint of the core journey at the 95th percentile, with load.max_concurrency users
    journey_p95_ms: float
    # requests/s the core journey must reach at that concurrency (below: a bottleneck to find)
    min_rps: float
    # agent runs/s at concurrency 16 over runs/s at 1 (the scripted agent, which waits, not works)
    agent_scaling_min: float
    # a run's events from their creation to every socket of the fleet, across both instances
    ws_delivery_p50_ms: float
    ws_delivery_p99_ms: float


class Budgets(Strict):
    preflight: PreflightBudgets
    auth: AuthBudgets
    ws: WsBudgets
    agents: AgentBudgets
    clickhouse: ClickHouseBudgets
    database: DatabaseBudgets
    redis: RedisBudgets
    config: ConfigBudgets
    e2e: E2eBudgets
    load: LoadBudgets


# -- expectations: the platform's configuration as the team decided it --------------------------

class LoginRate(Strict):
    per_email: int
    per_ip: int
    window_s: int


class Lockout(Strict):
    threshold: int
    duration_s: int


class PasswordHash(Strict):
    """argon2id's cost: production-grade outside local, cheap but real on a test stack."""

    time_cost: int
    memory_kib: int
    parallelism: int


class AuthExpect(Strict):
    audience: str
    algorithms: list[str]
    access_ttl_s: int
    session_max: int
    login_rate: LoginRate
    lockout: Lockout
    password_min_length: int
    password_hash: PasswordHash
    # Clock skew both services tolerate on a token's `exp`: what an expiry check waits past.
    token_leeway_s: float
    # A rotated-in signing key is published this long before it signs (what a rotation waits).
    key_activation_delay_s: float
    oidc_enabled: bool
    # Origins a browser may call both services from (CORS); the first is the one checks use.
    browser_origins: list[str]
    # The platform deletes accounts (DELETE /auth/users/me): checks delete the users they make.
    user_deletion: bool


class AuthBreaker(Strict):
    failure_threshold: int
    reset_s: float


class BackendExpect(Strict):
    """The backend's clocks on its calls to auth, as its `/health/ready` and breaker metrics
    report them: what the auth notebook's key rotation and breaker checks wait on."""

    # A cached JWKS is refetched after this: the bound on a key change the backend did not hear
    # announced (Redis away when auth made it).
    jwks_ttl_s: int
    # An unknown kid refetches the JWKS at most this often.
    jwks_min_refresh_s: float
    auth_breaker: AuthBreaker


class WsLimits(Strict):
    max_connections_per_user: int
    max_message_bytes: int
    rate_per_s: float
    rate_burst: int
    ping_interval_s: float
    ping_timeout_s: float
    replay_len: int


class WsExpect(Strict):
    auth_recheck_s: float
    # How long a connection's Redis record outlives an instance that died without closing it
    # (the gateway reports it in `connection_established`).
    state_ttl_s: float
    # How long the `redis` breaker stays open before it lets a trial publish through.
    redis_breaker_reset_s: float
    # The access-token lifetime of the second auth instance whose tokens the expiry checks watch expire.
    expiring_token_ttl_s: int
    limits: WsLimits


class AgentLimits(Strict):
    """The agents' limits and clocks as `/health/agents` reports them under `limits`. Each clock
    a check waits on is here, short locally (a check waits it out in seconds) and
    production-like elsewhere."""

    step_timeout_s: float
    run_timeout_s: float
    context_max_tokens: int
    # A run waiting for the user's answer fails `input_timeout` after this.
    input_timeout_s: float
    # A running run renews its lease in Redis; any instance fails a run whose lease lapsed.
    run_lease_s: float
    # Supply catalog prices are cached in Redis this long (every change drops its entry).
    price_cache_ttl_s: int
    # A failed model call is retried after this, doubled per retry.
    llm_backoff_s: float
    # An open model breaker lets a trial call through after this.
    llm_breaker_reset_s: float


class AgentsExpect(Strict):
    # The model provider is the stand-in: its request log and fault injection are there to use.
    llm_standin: bool
    model: str
    fallback_model: str
    limits: AgentLimits
    plans: dict[str, int | None]
    default_plan: str


class ClickHouseExpect(Strict):
    """The platform's ClickHouse as the team decided it (the backend reports it at /health/ready)."""

    # the two users the platform logs in as besides its migrations' admin
    writer_user: str
    reader_user: str
    # workload events older than this are dropped by the table's TTL (usage events never are)
    retention_days: int
    # one ingestion batch: more rows or bytes are refused with 413
    batch_max_rows: int
    batch_max_bytes: int
    # a platform table with more active parts than this in one partition makes readiness degraded
    parts_degraded_at: int


class DatabasePool(Strict):
    """Each service's PostgreSQL pool (the services report it at /health/ready)."""

    size: int
    max_overflow: int
    # how long a request waits for a connection past size + overflow before it is refused (503)
    timeout_s: float


class DatabaseHealth(Strict):
    # no platform session runs one statement, or sits idle inside a transaction, longer than these
    long_running_s: float
    idle_in_transaction_s: float


class DatabaseNames(Strict):
    auth: str
    backend: str


class DatabaseExpect(Strict):
    """The platform's PostgreSQL as the team decided it."""

    pool: DatabasePool
    health: DatabaseHealth
    # once PostgreSQL is back after a restart, the backend serves writes again within this
    recovery_s: float
    # the services' databases on the server
    databases: DatabaseNames
    # every foreign key of the backend's and auth's schemas, "table.column -> referenced_table RULE"
    foreign_keys: list[str]
    auth_foreign_keys: list[str]


class SentinelExpect(Strict):
    """Redis Sentinel as the platform's Redis is watched: the master's name, how many Sentinels
    must agree it is down, and the clocks a failover takes (short locally: a couple of seconds)."""

    master_name: str
    quorum: int
    down_after_ms: int
    failover_timeout_ms: int


class RedisPool(Strict):
    # connections one platform process may hold; one more waits at most `timeout_s`, then fails
    max_connections: int
    timeout_s: float


class RedisRetry(Strict):
    # a command meeting a broken connection is tried again `retries` times, backing off from
    # `backoff_base_s`, doubling, at most `backoff_cap_s` a time: what a call costs to fail while
    # Redis is away
    retries: int
    backoff_base_s: float
    backoff_cap_s: float


class RedisExpect(Strict):
    """The platform's Redis as the team decided it: replicated under Sentinel (null: one server
    at a plain URL, and the failover checks skip), its persistence, pool, and coordination clocks."""

    sentinel: SentinelExpect | None
    # AOF fsync policy: what a primary's kill -9 may lose (everysec: about the last second)
    appendfsync: str
    pool: RedisPool
    # the backends' leader lease (the stale-run sweeper runs on its holder only)
    leader_lease_s: float
    # a service's Redis listeners (events, key changes, configuration) try again within this
    # after losing Redis: how long after Redis returns a service hears again
    listener_retry_max_s: float
    command_retry: RedisRetry


class DependencyMap(Strict):
    # dependencies whose loss makes the service not ready (503), and those that only degrade it
    required: list[str]
    optional: list[str]


class Parity(Strict):
    # the env whose params describe the same platform elsewhere; `expect` may differ from it only
    # at these dotted paths (the clocks local shortens)
    reference_env: str
    allowed_drift: list[str]
    # settings two instances of one service may differ in
    per_instance: list[str]


class ConfigExpect(Strict):
    # settings that take effect without a restart (everything else needs one)
    reloadable: list[str]
    dependencies: dict[str, DependencyMap]
    parity: Parity
    # where spans go: `clickhouse` (otel_traces read directly) or `none`
    trace_store: Literal["clickhouse", "none"]


class E2eExpect(Strict):
    """The product a user meets: email links, payments, team invitations (the 08_e2e notebook)."""

    # A verification or password-reset link works once, within this (auth's /auth/config); short
    # locally, so the expiry check waits it out in seconds.
    email_token_ttl_s: int
    # The payment webhook refuses a signed timestamp further than this from now (/api/billing/config).
    webhook_tolerance_s: int
    # Monthly prices in cents of the plans a user can buy.
    plan_prices_cents: dict[str, int]
    # The plan a user is moved to for the conversion journey, and the one they buy.
    free_plan: str
    paid_plan: str


class Expect(Strict):
    auth: AuthExpect
    backend: BackendExpect
    ws: WsExpect
    agents: AgentsExpect
    clickhouse: ClickHouseExpect
    database: DatabaseExpect
    redis: RedisExpect
    config: ConfigExpect
    e2e: E2eExpect


class Env(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    production: bool = False
    destructive: bool = False
    # embedded: the workbook's own stack (`python -m workbook.stack`), endpoints from its state;
    # external: services the workbook did not start, listed here, their processes never touched
    # (a staging, a compose stack, a stack someone else started); none: no services at all.
    stack: Literal["embedded", "external", "none"] = "none"
    # Host patterns this env's services must live on: a run refuses to start against any other.
    allowed_hosts: list[str] = []
    services: dict[str, Service] = {}
    timeouts: Timeouts
    clock_skew_max_s: float
    load: Load
    budgets: Budgets
    # What the platform's public configuration must say (e.g. `expect.auth` vs `/auth/config`):
    # a deployment drifting from what the team decided shows up as a failed check.
    expect: Expect

    @model_validator(mode="after")
    def _production_is_safe(self) -> Env:
        if self.is_production and (self.destructive or self.load.enabled):
            raise ValueError("a production env may not enable destructive or load checks")
        return self

    @model_validator(mode="after")
    def _external_is_described(self) -> Env:
        if self.stack == "external" and not (self.services and self.allowed_hosts):
            raise ValueError("an external env lists its services and the hosts they may live on (allowed_hosts)")
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


def params_dir() -> Path:
    return project_root() / "params"


def available_envs(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def _read_yaml(name: str, directory: Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_envs(directory)) or "none"
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
    return _merge(_read_yaml(str(parent), directory, (*seen, name)), data)


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
    msg = "missing: every env must set it" if err["type"] == "missing" else err["msg"]
    return f"params/{name}.yaml: {where}: {msg}"


def load_params(name: str, directory: Path | None = None) -> Env:
    """One env's params, validated; endpoints of the embedded stack and secrets not yet resolved."""
    directory = directory or params_dir()
    if not name:
        raise ConfigError("no env given: pass env='local' (available: "
                          f"{', '.join(available_envs(directory))})")
    data = _read_yaml(name, directory)
    data.setdefault("name", name)
    try:
        return Env.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_validation_line(e, name)) from None
