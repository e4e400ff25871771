"""The platform's configuration plumbing on its own: where each value comes from, the hash two
instances compare, what hot reload refuses, and which hosts env detection refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.common import config_report, environment
from app.common.errors import ApiError
from app.common.live_config import LiveConfig
from app.common.settings import BackendSettings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith("BACKEND_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_layers_and_sources(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "backend.json"
    config.write_text(json.dumps({"ws_rate_burst": 11, "ws_rate_per_s": 7.0}))
    secret = tmp_path / "llm_key"
    secret.write_text("from-the-file\n")
    clean_env.setenv("BACKEND_CONFIG_FILE", str(config))
    clean_env.setenv("BACKEND_WS_RATE_PER_S", "9")
    clean_env.setenv("BACKEND_LLM_API_KEY", "from-the-variable")
    clean_env.setenv("BACKEND_LLM_API_KEY_FILE", str(secret))
    s = BackendSettings()
    assert (s.ws_rate_burst, s.ws_rate_per_s, s.secret("llm_api_key")) == (11, 9.0, "from-the-file")
    report = config_report.report(s, "backend")
    sources = {k: v["source"] for k, v in report["values"].items()}
    assert (sources["ws_rate_burst"], sources["ws_rate_per_s"], sources["deletion_retry_s"]) == ("file", "env", "default")
    assert report["secrets"]["llm_api_key"] == "set" and report["secrets"]["clickhouse_password"] == "unset"
    assert "from-the" not in json.dumps(report)


def test_hash_ignores_instance_and_follows_values(clean_env: pytest.MonkeyPatch) -> None:
    one = config_report.report(BackendSettings(instance_id="a"), "backend")
    two = config_report.report(BackendSettings(instance_id="b"), "backend")
    other = config_report.report(BackendSettings(instance_id="a", ws_rate_burst=3), "backend")
    assert one["hash"] == two["hash"] != other["hash"]


def test_reload_refuses_bad_values_and_fixed_settings(clean_env: pytest.MonkeyPatch) -> None:
    current = BackendSettings()
    live = LiveConfig("backend", None, lambda: current, lambda s: None)  # type: ignore[arg-type]
    assert live.validated({"ws_rate_per_s": 2.5}).ws_rate_per_s == 2.5
    for changes, status, error in (({"ws_rate_per_s": -1}, 422, "invalid_setting"),
                                   ({"database_url": "postgresql://x/y"}, 409, "restart_required"),
                                   ({"no_such": 1}, 422, "unknown_setting")):
        with pytest.raises(ApiError) as refused:
            live.validated(changes)
        assert (refused.value.status, refused.value.error) == (status, error)


@pytest.mark.parametrize("url, refused", [
    ("postgresql://app@pg.staging.example.com/backend", True),
    ("postgresql://app@db-stg-1.internal/backend", True),
    ("postgresql://app@prod.example.com/backend", True),
    ("postgresql://app@prodigy.example.com/backend", False),
    ("postgresql://app@127.0.0.1:5432/backend", False),
])
def test_other_env_hosts_refused_in_local(clean_env: pytest.MonkeyPatch, url: str, refused: bool) -> None:
    problems = environment.problems(BackendSettings(database_url=url))
    assert bool(problems) is refused, problems
    assert all(p.startswith("BACKEND_DATABASE_URL") for p in problems)


def test_production_refuses_debug(clean_env: pytest.MonkeyPatch) -> None:
    problems = environment.problems(BackendSettings(env="production", debug=True, log_level="DEBUG"))
    assert [p.split()[0] for p in problems] == ["BACKEND_DEBUG", "BACKEND_LOG_LEVEL=DEBUG"]


def test_previous_service_secret_only_inside_its_window() -> None:
    import time

    from app.auth.service_clients import previous_secret_scopes
    from app.common.settings import AuthSettings, ServiceClient

    def settings(until: float) -> AuthSettings:
        client = ServiceClient(secret="new-secret", previous_secret="old-secret", previous_valid_until=until,
                               scopes=["auth:introspect"])
        return AuthSettings(service_clients={"svc": client})

    open_window, closed = settings(time.time() + 60), settings(time.time() - 1)
    assert previous_secret_scopes(open_window, "svc", "old-secret") == ["auth:introspect"]
    assert previous_secret_scopes(closed, "svc", "old-secret") is None
    assert previous_secret_scopes(open_window, "svc", "new-secret") is None  # the new one is the database's
    assert previous_secret_scopes(open_window, "other", "old-secret") is None
