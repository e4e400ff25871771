"""The platform's settings, one class per service: `AUTH_*` and `BACKEND_*` environment variables.

Secrets are `SecretStr` so they never show up in a repr, a log line or an error message;
each may also be given as a file (`AUTH_<NAME>_FILE`), the way container secrets arrive.
"""

from __future__ import annotations

import os
from ipaddress import ip_network
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, JsonConfigSettingsSource, SettingsConfigDict

Environment = Literal["local", "docker", "staging", "production"]



class ServiceClient(BaseModel):
    secret: SecretStr
    scopes: list[str] = []
    # Rotation without downtime: the secret being replaced stays accepted until this epoch second,
    # so callers move to the new one within the window; after it only `secret` works.
    previous_secret: SecretStr | None = None
    previous_valid_until: float | None = None


# Secrets every service has (tracing's ClickHouse login), besides each class's own.
COMMON_SECRET_FIELDS = ("otel_clickhouse_password",)
# Settings that take effect without a restart (app.common.live_config): rate limits (the
# gateway's, auth's login limits and lockout), the plans' run quotas, feature flags, the log level. Everything else is
# read once at start and needs a restart to change.
RELOADABLE = ("log_level", "feature_flags", "ws_rate_per_s", "ws_rate_burst", "login_rate_email", "login_rate_ip",
              "login_rate_window_s", "lockout_threshold", "lockout_s", "plan_runs_per_day")
# Reloadable maps whose keys rows in the database name (a user's plan): a reload changes their
# values (the quotas), never which keys there are.
RELOAD_SAME_KEYS = ("plan_runs_per_day",)
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def config_file_path(prefix: str) -> Path | None:
    path = os.environ.get(f"{prefix}CONFIG_FILE")
    return Path(path) if path else None


class _ServiceSettings(BaseSettings):
    secret_fields: ClassVar[tuple[str, ...]] = ()

    env: Environment = "local"
    version: str = "0.1.0"
    # The PostgreSQL pool (app.common.pool): past size + overflow a request waits at most
    # db_pool_timeout_s for a connection, then answers 503 with Retry-After instead of hanging.
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(20, ge=0)
    db_pool_timeout_s: float = Field(5.0, gt=0)

    # How long one call to a dependency (Redis, another service) may take before it counts as failed.
    dependency_timeout_s: float = 3.0
    # The platform's Redis (app.common.redis_client), the same for every service.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr | None = None
    # Sentinel ("host:port" each) and the master's name: the primary is asked of them, and found
    # again after a failover; empty, `redis_url` is the one server.
    redis_sentinels: list[str] = []
    redis_master_name: str = "platform"
    redis_sentinel_password: SecretStr | None = None
    # Connections this process may hold; a command finding none free waits this long, then fails (503).
    redis_pool_max: int = Field(512, gt=0)
    redis_pool_timeout_s: float = Field(3.0, gt=0)
    # A Redis listener (pub/sub: events, key changes, configuration) that lost Redis tries again
    # within this, so a service hears again at most this long after Redis is back.
    redis_retry_max_s: float = Field(2.0, gt=0)
    # A command meeting a broken connection (a restart, a failover, a server still loading) is tried
    # again `redis_retries` times, backing off from `redis_backoff_base_s`, doubling, at most
    # `redis_backoff_cap_s` a time: how long a restart may take unnoticed, and how long a command
    # takes to fail while Redis is away.
    redis_retries: int = Field(3, ge=0)
    redis_backoff_base_s: float = Field(0.05, gt=0)
    redis_backoff_cap_s: float = Field(0.2, gt=0)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any, env_settings: Any,
                                   dotenv_settings: Any, file_secret_settings: Any) -> tuple[Any, ...]:
        # defaults < `<PREFIX>CONFIG_FILE` (JSON) < environment < `<PREFIX><NAME>_FILE` (secrets, below)
        path = config_file_path(str(settings_cls.model_config.get("env_prefix", "")))
        sources: tuple[Any, ...] = (init_settings, env_settings)
        if path is not None:
            sources += (JsonConfigSettingsSource(settings_cls, json_file=path),)
        return sources

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in cls.secret_fields + COMMON_SECRET_FIELDS:
            path = os.environ.get(f"{cls.model_config['env_prefix']}{name.upper()}_FILE")
            if path:
                data[name] = Path(path).read_text().strip()
        return data

    # Where this service's spans go: `clickhouse` writes them into `otel_traces` (the OpenTelemetry
    # Collector's ClickHouse-exporter schema) at `otel_endpoint`, `otlp` sends them to a Collector
    # (OTLP/HTTP) there, `none` records none.
    otel_exporter: Literal["none", "clickhouse", "otlp"] = "none"
    otel_endpoint: str | None = None
    otel_clickhouse_user: str = "default"
    otel_clickhouse_password: SecretStr | None = None
    otel_clickhouse_database: str = "default"
    # Spans are exported in batches this often, off the request path.
    otel_batch_delay_ms: int = Field(500, gt=0)
    log_level: LogLevel = "INFO"
    # Named switches the platform reads at call time (hot-reloadable).
    feature_flags: dict[str, bool] = {}
    # Debug aids (stack traces in errors, API docs); production refuses to start with it on.
    debug: bool = False
    # Host labels that name an environment: a dependency URL whose host carries another env's
    # label is refused at start (a staging DSN in a local service).
    env_host_labels: dict[str, list[str]] = {"staging": ["staging", "stg"], "production": ["prod", "production"],
                                             "docker": [], "local": []}

    @property
    def is_local(self) -> bool:
        return self.env == "local"

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None


class MailSettings(_ServiceSettings):
    """Outgoing email through an SMTP relay (verification, password reset, team invitations).
    Without `smtp_host` no email is sent and the endpoints that need one say so."""

    smtp_host: str | None = None
    smtp_port: int = Field(587, gt=0, lt=65536)
    # none: plain SMTP (a relay on this machine only); starttls: upgrade on 587; tls: implicit TLS on 465.
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "Platform <no-reply@platform.invalid>"
    # Where the product's pages are: the links in emails point here (the token is their only secret).
    app_url: str = "http://127.0.0.1:3000"


class AuthSettings(MailSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore", frozen=True)
    secret_fields = ("database_password", "redis_password", "redis_sentinel_password", "audit_db_password",
                     "oidc_client_secret", "smtp_password")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/auth"
    database_password: SecretStr | None = None
    # The role that may only INSERT/SELECT audit rows; created by the migrations.
    audit_db_user: str = "auth_audit"
    audit_db_password: SecretStr | None = None

    issuer: str = "http://127.0.0.1/auth"
    audience: str = "platform"
    key_dir: Path = Path("keys")
    # Dev-only: create a signing key when the key dir has none (refused outside local).
    generate_keys: bool = False
    # A rotated-in key is published this long before it signs: at least the JWKS cache time
    # verifiers use (auth's JWKS says max-age=60), so none meets a token of a key it never saw.
    key_activation_delay_s: float = Field(60.0, ge=0)
    access_ttl_s: int = Field(900, gt=0)
    refresh_ttl_s: int = Field(14 * 24 * 3600, gt=0)
    service_ttl_s: int = Field(300, gt=0)

    session_max: int = Field(5, gt=0)
    password_min_length: int = Field(10, ge=8)
    # argon2id cost: the library's default (~0.2 s a hash here) unless the env says otherwise;
    # startup refuses less than OWASP's minimum outside local (app.auth.startup).
    password_time_cost: int = Field(3, ge=1)
    password_memory_kib: int = Field(65536, ge=8)
    password_parallelism: int = Field(4, ge=1)
    # Clock skew tolerated when checking a token's `exp` (and `iat`).
    token_leeway_s: float = Field(5.0, ge=0, le=60)

    # An account without a password (OIDC only) is deleted only from a session opened this
    # recently: its owner logged in again just now, so a stolen token alone cannot delete it.
    reauth_max_age_s: int = Field(300, gt=0)

    login_rate_email: int = Field(10, gt=0)
    login_rate_ip: int = Field(50, gt=0)
    login_rate_window_s: int = Field(60, gt=0)
    lockout_threshold: int = Field(5, gt=0)
    lockout_s: int = Field(300, gt=0)

    oidc_provider_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_uri: str | None = None
    oidc_scopes: str = "openid email profile"

    # {"backend": {"secret": "...", "scopes": ["auth:introspect"]}}
    service_clients: dict[str, ServiceClient] = {}

    # A verification or password-reset link works once, within this.
    email_token_ttl_s: int = Field(24 * 3600, gt=0)

    cors_origins: list[str] = []
    # Peers (addresses or networks) whose X-Forwarded-For names the client (rate limits are per client IP).
    trusted_proxies: list[str] = []
    max_body_bytes: int = Field(64 * 1024, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> AuthSettings:
        # Checked here because each alone is valid: together they would break a promise.
        if self.refresh_ttl_s <= self.access_ttl_s:
            raise ValueError("AUTH_REFRESH_TTL_S must exceed AUTH_ACCESS_TTL_S "
                             "(an access token may not outlive its session)")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ip_network(entry, strict=False)  # a ValueError names the bad entry
        return value


class BackendSettings(MailSettings):
    model_config = SettingsConfigDict(env_prefix="BACKEND_", extra="ignore", frozen=True)
    secret_fields = ("database_password", "redis_password", "redis_sentinel_password", "service_client_secret",
                     "llm_api_key", "clickhouse_password", "clickhouse_writer_password", "clickhouse_reader_password",
                     "smtp_password", "payments_api_key", "payments_webhook_secret", "provider_keys")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/backend"
    database_password: SecretStr | None = None

    # Tokens are verified here against auth's JWKS; these must match auth's issuer and audience.
    auth_url: str = "http://127.0.0.1:8001"
    issuer: str = "http://127.0.0.1/auth"
    audience: str = "platform"
    # The backend's own client credentials at auth (for introspection).
    service_client_id: str = "backend"
    service_client_secret: SecretStr | None = None
    auth_timeout_s: float = Field(2.0, gt=0)
    # A cached JWKS is refreshed after this; while auth is unreachable the cached keys keep verifying.
    jwks_ttl_s: int = Field(300, gt=0)
    # An unknown kid refetches the JWKS at most this often (a stream of forged kids cannot hammer auth).
    jwks_min_refresh_s: float = Field(5.0, ge=0)
    # Clock skew tolerated when checking a token's `exp`: the same as auth's, or tokens auth still
    # takes would be refused here (or the other way round).
    token_leeway_s: float = Field(5.0, ge=0, le=60)
    breaker_failure_threshold: int = Field(5, gt=0)
    breaker_reset_s: float = Field(30.0, gt=0)

    cors_origins: list[str] = []
    max_body_bytes: int = Field(256 * 1024, gt=0)

    # This process among the backend instances (events say where they were produced).
    instance_id: str = "backend-1"
    # WebSocket gateway. Limits are announced to every client in `connection_established`.
    ws_max_connections_per_user: int = Field(20, gt=0)
    ws_max_message_bytes: int = Field(64 * 1024, gt=0)  # larger frames: close 1009
    ws_rate_per_s: float = Field(20.0, gt=0)  # client messages per second per connection
    ws_rate_burst: int = Field(40, gt=0)
    ws_ping_interval_s: float = Field(20.0, gt=0)  # server pings; no pong within the timeout: closed
    ws_ping_timeout_s: float = Field(20.0, gt=0)
    ws_auth_recheck_s: float = Field(5.0, gt=0)  # how often an open socket's token is checked for revocation
    # How long a connection's Redis record (and its user's connection set) outlives an instance that
    # died without closing it; an open socket refreshes it every third of that.
    ws_state_ttl_s: float = Field(120.0, gt=0)
    ws_replay_len: int = Field(1000, gt=0)  # events kept per thread for `resume`
    # Redis pub/sub carries events between instances; its breaker decides when to deliver locally only.
    redis_breaker_failure_threshold: int = Field(3, gt=0)
    redis_breaker_reset_s: float = Field(10.0, gt=0)
    # Test agents (the scripted `probe`, for gateway checks) in the registry. Off, their names are
    # unknown agents like any other; production refuses to start with them on (startup.problems).
    test_agents: bool = False
    # The `probe` agent's pause between steps.
    run_step_delay_ms: int = Field(50, ge=0)

    # ClickHouse: workload events the data agent reads, usage events, the content corpus.
    clickhouse_url: str = "http://127.0.0.1:8123"
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr | None = None
    clickhouse_database: str = "default"
    # `clickhouse_user` runs the migrations; the platform itself logs in as two more users: the
    # writer (ingestion, usage, corpus changes) and the reader (analytics, agent tools), whose
    # `readonly` profile makes the server refuse any write. With `clickhouse_manage_users` the
    # migrations create both, with their grants (a server); off, the server already has them.
    clickhouse_writer_user: str = Field("platform_writer", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    clickhouse_writer_password: SecretStr | None = None
    clickhouse_reader_user: str = Field("platform_reader", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    clickhouse_reader_password: SecretStr | None = None
    clickhouse_manage_users: bool = False
    # Workload events older than this are dropped by the table's TTL (usage events, the bill, never).
    workload_retention_days: int = Field(395, gt=0, le=3650)
    # One ingestion batch (POST /api/events/batch): more rows or bytes are refused with 413.
    events_batch_max_rows: int = Field(10_000, gt=0, le=1_000_000)
    events_batch_max_bytes: int = Field(4 * 1024 * 1024, gt=0)
    # A platform table with more active parts than this in one partition: readiness degraded
    # (ClickHouse itself starts delaying inserts at 1000 and refuses them at 3000).
    clickhouse_parts_degraded_at: int = Field(300, gt=0)

    # The OpenAI-compatible provider every agent calls.
    llm_base_url: str = "http://127.0.0.1:8090/v1"
    llm_api_key: SecretStr | None = None
    llm_model: str = "standin-large"
    llm_fallback_model: str | None = "standin-small"
    llm_timeout_s: float = Field(30.0, gt=0)
    llm_retries: int = Field(2, ge=0, le=10)  # per model, on 429/5xx/transport errors/malformed answers
    llm_backoff_s: float = Field(0.5, ge=0)  # doubled per retry; a 429's Retry-After wins if larger
    llm_breaker_failure_threshold: int = Field(5, gt=0)
    llm_breaker_reset_s: float = Field(30.0, gt=0)

    # Agent runs: any single step (model call, tool call), and the whole run.
    agent_step_timeout_s: float = Field(60.0, gt=0)
    agent_run_timeout_s: float = Field(600.0, gt=0)
    agent_input_timeout_s: float = Field(3600.0, gt=0)  # a run waiting for the user's answer
    # Thread history given to the model, newest first, cut at this many tokens.
    agent_context_max_tokens: int = Field(2000, ge=100)
    # A running run renews its lease this often; a run whose lease lapsed (its instance died) is failed.
    # One instance at a time leads (runs the stale-run sweeper): it holds this lease in Redis and
    # renews it every third of it; when it dies, another takes over within it.
    leader_lease_s: float = Field(10.0, gt=0)
    run_lease_s: float = Field(15.0, gt=0)
    # Supply catalog prices cached in Redis (shared by instances, dropped on every update).
    price_cache_ttl_s: int = Field(300, gt=0)

    # Deleting a user's data (app.backend.deletions): an attempt that could not finish (runs still
    # stopping, a store away) is tried again after this; an entry another instance has held this
    # long without finishing it (that instance died) is taken over.
    deletion_retry_s: float = Field(1.0, gt=0)
    deletion_claim_idle_s: float = Field(30.0, gt=0)

    # Runs per UTC day by plan (null: unlimited); users without a plan row get `default_plan`.
    plan_runs_per_day: dict[str, int | None] = {"free": 20, "early": 200, "mid": 2000, "enterprise": None}
    default_plan: str = "free"

    # Team invitations: an invitation link works once, within this.
    team_invite_ttl_s: int = Field(7 * 24 * 3600, gt=0)

    # The payment provider (Stripe-style): checkout sessions, and the webhook it signs.
    payments_url: str | None = None
    payments_api_key: SecretStr | None = None
    payments_webhook_secret: SecretStr | None = None
    # A webhook whose signed timestamp is further than this from now is refused (replayed or stale).
    payments_webhook_tolerance_s: int = Field(300, gt=0)
    # Monthly price of each paid plan, in cents; a plan not listed here cannot be bought.
    plan_prices_cents: dict[str, int] = {"early": 900, "mid": 4900}
    # A paid period; a downgrade takes effect at its end.
    plan_period_days: int = Field(30, gt=0)

    # Users' own model providers: their API keys are encrypted (AES-GCM) with the active one of
    # these keys (JSON {"key id": "<urlsafe base64 of 32 bytes>"}); older ids still decrypt.
    provider_keys: SecretStr | None = None
    provider_key_active: str | None = None
    provider_test_timeout_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _plans(self) -> BackendSettings:
        if self.default_plan not in self.plan_runs_per_day:
            raise ValueError(f"BACKEND_DEFAULT_PLAN '{self.default_plan}' is not one of BACKEND_PLAN_RUNS_PER_DAY's "
                             f"plans ({', '.join(self.plan_runs_per_day)})")
        return self
