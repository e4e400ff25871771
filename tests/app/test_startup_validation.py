"""Startup validation rules, and how both services' command lines refuse bad settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.auth.keys import KeyRing
from app.auth.startup import problems
from app.common.settings import AuthSettings
from app.common.validation import weak

STRONG = "Zq8#vLm2$Rt9!pWx4&Kd"


def strong(tmp_path: Path, **kw: object) -> AuthSettings:
    KeyRing(tmp_path / "keys").ensure()
    base = dict(env="staging", issuer="https://auth.example.com", key_dir=tmp_path / "keys",
                database_password=STRONG, redis_password=STRONG, audit_db_password=STRONG)
    return AuthSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_local_is_never_refused() -> None:
    assert problems(AuthSettings(env="local", generate_keys=True)) == []


def test_a_complete_strong_config_passes(tmp_path: Path) -> None:
    assert problems(strong(tmp_path)) == []


def test_each_problem_is_named(tmp_path: Path) -> None:
    found = problems(strong(tmp_path, redis_password=None, audit_db_password="password123",
                            generate_keys=True, cors_origins=["*"], issuer="http://auth",
                            oidc_provider_url="https://idp", oidc_client_secret="short",
                            service_clients={"backend": {"secret": STRONG, "scopes": []}}))
    text = "\n".join(found)
    for name in ("AUTH_REDIS_PASSWORD is missing", "AUTH_AUDIT_DB_PASSWORD is weak", "AUTH_GENERATE_KEYS",
                 "AUTH_CORS_ORIGINS", "AUTH_ISSUER", "AUTH_OIDC_CLIENT_ID is missing",
                 "AUTH_OIDC_CLIENT_SECRET is weak", "AUTH_SERVICE_CLIENTS[backend].secret is weak"):
        assert name in text, (name, found)
    assert STRONG not in text and "password123" not in text


def test_cheap_password_hashing_is_refused_outside_local(tmp_path: Path) -> None:
    cheap = problems(strong(tmp_path, password_time_cost=1, password_memory_kib=8192, password_parallelism=1))
    assert [p for p in cheap if p.startswith("AUTH_PASSWORD_MEMORY_KIB")], cheap
    assert problems(strong(tmp_path, password_time_cost=2, password_memory_kib=19456, password_parallelism=1)) == []
    assert problems(AuthSettings(env="local", generate_keys=True, password_time_cost=1, password_memory_kib=8192)) == []


def test_missing_and_exposed_keys_are_refused(tmp_path: Path) -> None:
    s = strong(tmp_path)
    assert problems(AuthSettings(**{**s.model_dump(), "key_dir": tmp_path / "none"}))[0].startswith("AUTH_KEY_DIR")
    pem = next((tmp_path / "keys").glob("*.pem"))
    pem.chmod(0o644)
    assert any("readable by group/others" in p for p in problems(s))


def test_weak_rules() -> None:
    assert weak("short") and weak("aaaaaaaaaaaaaaaaaaaa") and weak("Password1")
    assert weak(STRONG) is None


@pytest.mark.parametrize(("service", "var", "value", "says"), [
    ("auth", "AUTH_SERVICE_CLIENTS", "not-json", "not valid JSON"),
    ("auth", "AUTH_ACCESS_TTL_S", "-5", "greater than 0"),
    ("auth", "AUTH_REFRESH_TTL_S", "600", "must exceed AUTH_ACCESS_TTL_S"),
    ("backend", "BACKEND_CORS_ORIGINS", "not-json", "not valid JSON"),
    ("backend", "BACKEND_BREAKER_FAILURE_THRESHOLD", "0", "greater than 0"),
])
def test_bad_setting_exits_2_naming_the_variable(service: str, var: str, value: str, says: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "BACKEND_"))}
    done = subprocess.run([sys.executable, "-m", f"app.{service}", "check-config"], env={**env, var: value},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"  - {var}" in done.stderr and says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_backend_names_a_missing_model_key_and_a_plain_http_provider() -> None:
    from app.backend.startup import problems as backend_problems
    from app.common.settings import BackendSettings

    found = backend_problems(BackendSettings(
        env="staging", database_password=STRONG, redis_password=STRONG, service_client_secret=STRONG * 2,
        clickhouse_password=STRONG, auth_url="https://auth.example.com", issuer="https://auth.example.com",
        llm_base_url="http://llm.example.com/v1"))
    assert "BACKEND_LLM_API_KEY is missing" in found and any(p.startswith("BACKEND_LLM_BASE_URL") for p in found)
    assert len(found) == 2, found
