"""The settings the embedded stack gives the platform, taken from params/local.yaml's `expect`.

Each limit the local env expects of the platform is written once, in params: the stack starts
auth and the backends with it, and the checks then hold what the services report and enforce
to the same file: limits, and the clocks checks wait on (lockout, token leeway, key activation,
the backend's JWKS cache and auth breaker), shortened there for local runs. Settings the workbook
has no expectation of stay in the service modules beside the reason they are what they are.
"""

from __future__ import annotations

import json

from workbook.params import Expect, load_params

EMBEDDED_ENV = "local"


def expected() -> Expect:
    return load_params(EMBEDDED_ENV).expect


def auth_env() -> dict[str, str]:
    a = expected().auth
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
    }


def backend_env() -> dict[str, str]:
    e = expected()
    ws, agents, on_auth = e.ws, e.agents, e.backend
    return {
        "BACKEND_AUDIENCE": e.auth.audience,
        "BACKEND_TOKEN_LEEWAY_S": str(e.auth.token_leeway_s),
        "BACKEND_JWKS_TTL_S": str(on_auth.jwks_ttl_s),
        "BACKEND_JWKS_MIN_REFRESH_S": str(on_auth.jwks_min_refresh_s),
        "BACKEND_BREAKER_FAILURE_THRESHOLD": str(on_auth.auth_breaker.failure_threshold),
        "BACKEND_BREAKER_RESET_S": str(on_auth.auth_breaker.reset_s),
        "BACKEND_WS_AUTH_RECHECK_S": str(ws.auth_recheck_s),
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
        "BACKEND_PLAN_RUNS_PER_DAY": json.dumps(agents.plans),
        "BACKEND_DEFAULT_PLAN": agents.default_plan,
    }
