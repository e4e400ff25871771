"""Startup validation rules, and how both services' command lines refuse bad settings."""

from __future__ import annotations

import os
import re
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
    done = run(service, {var: value}, "--check-config")
    assert done.returncode == 2, done.stderr
    assert f"  - {var}" in done.stderr and says in done.stderr and "Traceback" not in done.stderr, done.stderr


def run(service: str, settings: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m app.<service> *args` with only `settings` of the service's own variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "BACKEND_"))}
    return subprocess.run([sys.executable, "-m", f"app.{service}", *args], env={**env, **settings},
                          capture_output=True, text=True, timeout=60)


def staging_auth(tmp_path: Path, **overrides: str) -> dict[str, str]:
    KeyRing(tmp_path / "keys").ensure()
    return {"AUTH_ENV": "staging", "AUTH_ISSUER": "https://auth.example.com", "AUTH_KEY_DIR": str(tmp_path / "keys"),
            "AUTH_DATABASE_PASSWORD": STRONG, "AUTH_REDIS_PASSWORD": STRONG, "AUTH_AUDIT_DB_PASSWORD": STRONG,
            # nothing listens here: a start that got past validation would fail on the database (exit 3)
            "AUTH_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/auth", **overrides}


def test_check_config_accepts_what_would_start_and_writes_nothing(tmp_path: Path) -> None:
    done = run("auth", {"AUTH_GENERATE_KEYS": "true", "AUTH_KEY_DIR": str(tmp_path / "keys")}, "--check-config")
    assert (done.returncode, done.stdout.strip()) == (0, "auth: configuration ok for env=local"), done.stderr
    assert not (tmp_path / "keys").exists(), "--check-config generated a key"
    assert run("auth", staging_auth(tmp_path), "--check-config").returncode == 0
    backend = run("backend", {}, "--check-config")
    assert (backend.returncode, backend.stdout.strip()) == (0, "backend: configuration ok for env=local"), backend.stderr


@pytest.mark.parametrize(("broken", "named"), [
    ({"AUTH_REDIS_PASSWORD": "changeme"}, {"AUTH_REDIS_PASSWORD"}),
    ({"AUTH_GENERATE_KEYS": "true", "AUTH_CORS_ORIGINS": '["*"]', "AUTH_ISSUER": "http://auth.example.com"},
     {"AUTH_GENERATE_KEYS", "AUTH_CORS_ORIGINS", "AUTH_ISSUER"}),
    ({"AUTH_PASSWORD_TIME_COST": "1", "AUTH_PASSWORD_MEMORY_KIB": "8192"}, {"AUTH_PASSWORD_MEMORY_KIB"}),
    ({"AUTH_SESSION_MAX": "0"}, {"AUTH_SESSION_MAX"}),
])
def test_check_config_refuses_as_a_start_does(tmp_path: Path, broken: dict[str, str], named: set[str]) -> None:
    settings = staging_auth(tmp_path, **broken)
    checked, started = run("auth", settings, "--check-config"), run("auth", settings, "--port", "1")
    assert checked.returncode == started.returncode == 2, (checked.stderr, started.stderr)
    assert checked.stderr == started.stderr and "Traceback" not in checked.stderr, (checked.stderr, started.stderr)
    assert set(re.findall(r"^  - ([A-Z][A-Z0-9_]*)", checked.stderr, re.M)) == named, checked.stderr
    assert "changeme" not in checked.stderr


def test_check_config_needs_a_key_unless_one_would_be_generated(tmp_path: Path) -> None:
    done = run("auth", {"AUTH_KEY_DIR": str(tmp_path / "none")}, "--check-config")
    assert done.returncode == 2 and "  - AUTH_KEY_DIR" in done.stderr, done.stderr


def test_backend_check_config_refuses_as_a_start_does() -> None:
    settings = {"BACKEND_ENV": "staging", "BACKEND_SERVICE_CLIENT_SECRET": "changeme",
                "BACKEND_CORS_ORIGINS": '["*"]', "BACKEND_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/backend"}
    checked, started = run("backend", settings, "--check-config"), run("backend", settings, "--port", "1")
    assert checked.returncode == started.returncode == 2, (checked.stderr, started.stderr)
    assert checked.stderr == started.stderr, (checked.stderr, started.stderr)
    for var in ("BACKEND_SERVICE_CLIENT_SECRET", "BACKEND_CORS_ORIGINS"):
        assert f"  - {var}" in checked.stderr, checked.stderr
    assert "changeme" not in checked.stderr


def test_backend_names_a_missing_model_key_and_a_plain_http_provider() -> None:
    from app.backend.startup import problems as backend_problems
    from app.common.settings import BackendSettings

    found = backend_problems(BackendSettings(
        env="staging", database_password=STRONG, redis_password=STRONG, service_client_secret=STRONG * 2,
        clickhouse_password=STRONG, auth_url="https://auth.example.com", issuer="https://auth.example.com",
        llm_base_url="http://llm.example.com/v1"))
    assert "BACKEND_LLM_API_KEY is missing" in found and any(p.startswith("BACKEND_LLM_BASE_URL") for p in found)
    assert len(found) == 2, found
