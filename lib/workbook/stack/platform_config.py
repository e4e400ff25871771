"""The settings the embedded stack gives the platform, taken from params/local.yaml's `expect`.

Each limit the local env expects of the platform is written once, in params: the stack starts
auth and the backends with it, and the checks then hold what the services report and enforce
to the same file: limits, and the clocks checks wait on (lockout, token leeway, key activation,
the backend's JWKS cache and auth breaker, the agents' run lease, input timeout, price cache,
model backoff and breaker reset, Redis's command retries), shortened there for local runs. Settings the workbook has no
expectation of stay in the service modules beside the reason they are what they are.
"""

from __future__ import annotations

import json

from workbook.params import DatabasePool, Expect, RedisExpect, load_params

EMBEDDED_ENV = "local"


def expected() -> Expect:
    return load_params(EMBEDDED_ENV).expect


def auth_env(expect: Expect | None = None) -> dict[str, str]:
    """Auth's variables for `expect` (local params' by default: what the stack starts it with)."""
    e = expect or expected()
    a = e.auth
    return {
        "AUTH_AUDIENCE": a.audience,
        "AUTH_ACCESS_TTL_S": str(a.access_ttl_s),
        "AUTH_SESSION_MAX": str(a.session_max),
        "AUTH_LOGIN_RATE_EMAIL": str(a.login_rate.per_email),
        "AUTH_LOGIN_RATE_IP": str(a.login_rate.per_ip),
        "AUTH_LOGIN_RATE_WINDOW_S": str(a.login_rate.window_s),
        "AUTH_LOCKOUT_THRESHOLD": str(a.lockout.threshold),
        "AUTH_LOCKOUT_S": str(a.lockout.duration_s),
        "AUTH_PASSWORD_MIN_LENGTH": str(a.password_min_length),
        "AUTH_PASSWORD_TIME_COST": str(a.password_hash.time_cost),
        "AUTH_PASSWORD_MEMORY_KIB": str(a.password_hash.memory_kib),
        "AUTH_PASSWORD_PARALLELISM": str(a.password_hash.parallelism),
        "AUTH_TOKEN_LEEWAY_S": str(a.token_leeway_s),
        "AUTH_KEY_ACTIVATION_DELAY_S": str(a.key_activation_delay_s),
        "AUTH_CORS_ORIGINS": json.dumps(a.browser_origins),
        **_pool_env("AUTH", e.database.pool),
        "AUTH_EMAIL_TOKEN_TTL_S": str(e.e2e.email_token_ttl_s),
        **_redis_env("AUTH", e.redis),
    }


def _pool_env(prefix: str, pool: DatabasePool) -> dict[str, str]:
    return {f"{prefix}_DB_POOL_SIZE": str(pool.size), f"{prefix}_DB_MAX_OVERFLOW": str(pool.max_overflow),
            f"{prefix}_DB_POOL_TIMEOUT_S": str(pool.timeout_s)}


def _redis_env(prefix: str, r: RedisExpect) -> dict[str, str]:
    retry = r.command_retry
    return {f"{prefix}_REDIS_RETRY_MAX_S": str(r.listener_retry_max_s), f"{prefix}_REDIS_RETRIES": str(retry.retries),
            f"{prefix}_REDIS_BACKOFF_BASE_S": str(retry.backoff_base_s),
            f"{prefix}_REDIS_BACKOFF_CAP_S": str(retry.backoff_cap_s)}


def backend_env(expect: Expect | None = None) -> dict[str, str]:
    """The backend's variables for `expect` (local params' by default)."""
    e = expect or expected()
    ws, agents, ch, on_auth = e.ws, e.agents, e.clickhouse, e.backend
    return {
        "BACKEND_AUDIENCE": e.auth.audience,
        "BACKEND_TOKEN_LEEWAY_S": str(e.auth.token_leeway_s),
        "BACKEND_CORS_ORIGINS": json.dumps(e.auth.browser_origins),
        "BACKEND_JWKS_TTL_S": str(on_auth.jwks_ttl_s),
        "BACKEND_JWKS_MIN_REFRESH_S": str(on_auth.jwks_min_refresh_s),
        "BACKEND_BREAKER_FAILURE_THRESHOLD": str(on_auth.auth_breaker.failure_threshold),
        "BACKEND_BREAKER_RESET_S": str(on_auth.auth_breaker.reset_s),
        "BACKEND_WS_AUTH_RECHECK_S": str(ws.auth_recheck_s),
        "BACKEND_WS_STATE_TTL_S": str(ws.state_ttl_s),
        "BACKEND_REDIS_BREAKER_RESET_S": str(ws.redis_breaker_reset_s),
        "BACKEND_WS_MAX_CONNECTIONS_PER_USER": str(ws.limits.max_connections_per_user),
        "BACKEND_WS_MAX_MESSAGE_BYTES": str(ws.limits.max_message_bytes),
        "BACKEND_WS_RATE_PER_S": str(ws.limits.rate_per_s),
        "BACKEND_WS_RATE_BURST": str(ws.limits.rate_burst),
        "BACKEND_WS_PING_INTERVAL_S": str(ws.limits.ping_interval_s),
        "BACKEND_WS_PING_TIMEOUT_S": str(ws.limits.ping_timeout_s),
        "BACKEND_WS_REPLAY_LEN": str(ws.limits.replay_len),
        "BACKEND_LLM_MODEL": agents.model,
        "BACKEND_LLM_FALLBACK_MODEL": agents.fallback_model,
        "BACKEND_AGENT_STEP_TIMEOUT_S": str(agents.limits.step_timeout_s),
        "BACKEND_AGENT_RUN_TIMEOUT_S": str(agents.limits.run_timeout_s),
        "BACKEND_AGENT_CONTEXT_MAX_TOKENS": str(agents.limits.context_max_tokens),
        "BACKEND_AGENT_INPUT_TIMEOUT_S": str(agents.limits.input_timeout_s),
        "BACKEND_RUN_LEASE_S": str(agents.limits.run_lease_s),
        "BACKEND_PRICE_CACHE_TTL_S": str(agents.limits.price_cache_ttl_s),
        "BACKEND_LLM_BACKOFF_S": str(agents.limits.llm_backoff_s),
        "BACKEND_LLM_BREAKER_RESET_S": str(agents.limits.llm_breaker_reset_s),
        "BACKEND_PLAN_RUNS_PER_DAY": json.dumps(agents.plans),
        "BACKEND_DEFAULT_PLAN": agents.default_plan,
        "BACKEND_CLICKHOUSE_WRITER_USER": ch.writer_user,
        "BACKEND_CLICKHOUSE_READER_USER": ch.reader_user,
        "BACKEND_WORKLOAD_RETENTION_DAYS": str(ch.retention_days),
        "BACKEND_EVENTS_BATCH_MAX_ROWS": str(ch.batch_max_rows),
        "BACKEND_EVENTS_BATCH_MAX_BYTES": str(ch.batch_max_bytes),
        "BACKEND_CLICKHOUSE_PARTS_DEGRADED_AT": str(ch.parts_degraded_at),
        **_pool_env("BACKEND", e.database.pool),
        "BACKEND_PAYMENTS_WEBHOOK_TOLERANCE_S": str(e.e2e.webhook_tolerance_s),
        "BACKEND_PLAN_PRICES_CENTS": json.dumps(e.e2e.plan_prices_cents),
        **_redis_env("BACKEND", e.redis),
    }
