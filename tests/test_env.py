"""params/<env>.yaml -> a typed Env: extends, secrets by variable name, one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests_support import REPO_PARAMS, params_text

from workbook.env import load_env
from workbook.errors import ConfigError, StackError
from workbook.params import load_params


def write(params: Path, name: str, text: str) -> None:
    params.mkdir(exist_ok=True)
    (params / f"{name}.yaml").write_text(text)


def test_extends_merges_nested_keys(tmp_path: Path) -> None:
    write(tmp_path, "base", params_text())
    write(tmp_path, "child", "extends: base\nbudgets: {preflight: {redis_ms: 5}}\n")
    env = load_env("child", tmp_path)
    assert env.name == "child"
    assert (env.budgets.preflight.redis_ms, env.budgets.preflight.postgres_ms) == (5, 250)
    assert env.load.enabled is True


def test_a_missing_budget_or_expectation_names_the_key(tmp_path: Path) -> None:
    data = yaml.safe_load(params_text())
    del data["budgets"]["ws"]["stop_run_ms"]
    write(tmp_path, "holey", yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"^params/holey.yaml: budgets.ws.stop_run_ms: missing"):
        load_env("holey", tmp_path)
    data = yaml.safe_load(params_text())
    del data["expect"]["agents"]["limits"]["run_timeout_s"]
    write(tmp_path, "holey", yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"expect.agents.limits.run_timeout_s: missing"):
        load_env("holey", tmp_path)


def test_unknown_env_lists_available(tmp_path: Path) -> None:
    write(tmp_path, "local", "")
    write(tmp_path, "staging", "")
    with pytest.raises(ConfigError, match=r"unknown env 'stagin'.*available: local, staging"):
        load_env("stagin", tmp_path)


def test_missing_secret_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WB_TEST_PG_PW", raising=False)
    services = {"postgres": {"url": "postgresql://u@db.example.com/x", "password_env": "WB_TEST_PG_PW"}}
    write(tmp_path, "s", params_text(services=services))
    with pytest.raises(ConfigError, match=r"services\.postgres\.password_env names WB_TEST_PG_PW, which is not set"):
        load_env("s", tmp_path)
    monkeypatch.setenv("WB_TEST_PG_PW", "s3cret-value")
    env = load_env("s", tmp_path)
    assert env.service("postgres").secret() == "s3cret-value"
    assert "s3cret-value" not in env.model_dump_json() + repr(env)


def test_secret_values_are_refused_in_params(tmp_path: Path) -> None:
    write(tmp_path, "s", params_text(services={"redis": {"url": "redis://x", "password": "hunter2"}}))
    with pytest.raises(ConfigError, match=r"services\.redis\.password' looks like a secret value"):
        load_env("s", tmp_path)


def test_production_refuses_destructive_and_load(tmp_path: Path) -> None:
    write(tmp_path, "prod-eu", params_text(destructive=True))
    with pytest.raises(ConfigError, match="production env may not enable destructive"):
        load_env("prod-eu", tmp_path)
    write(tmp_path, "live", params_text(production=True, destructive=False,
                                        load={"enabled": False, "max_concurrency": 1, "max_requests": 1,
                                              "max_duration_s": 1}))
    env = load_env("live", tmp_path)
    assert not env.allows("destructive") and not env.allows("load")


def test_invalid_field_is_one_line(tmp_path: Path) -> None:
    write(tmp_path, "bad", params_text(timeouts={"connect_s": "soon", "request_s": 1, "startup_s": 1}))
    with pytest.raises(ConfigError) as e:
        load_env("bad", tmp_path)
    assert str(e.value).startswith("params/bad.yaml: timeouts.connect_s:")
    assert "\n" not in str(e.value)


def test_unknown_key_and_bad_yaml_and_loop(tmp_path: Path) -> None:
    write(tmp_path, "typo", params_text(destructve=True))
    with pytest.raises(ConfigError, match="destructve"):
        load_env("typo", tmp_path)
    write(tmp_path, "broken", "a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_env("broken", tmp_path)
    write(tmp_path, "a", "extends: b\n")
    write(tmp_path, "b", "extends: a\n")
    with pytest.raises(ConfigError, match="loops: a -> b -> a"):
        load_env("a", tmp_path)


def test_embedded_env_without_stack_says_how_to_start(tmp_path: Path) -> None:
    write(tmp_path / "params", "local", params_text(stack="embedded"))
    with pytest.raises(StackError, match=r"python -m workbook.stack up"):
        load_env("local", tmp_path / "params")


def test_repo_params_load() -> None:
    """The shipped params files are valid (staging's secrets need not be set to check that)."""
    for name in ("local", "docker", "staging"):
        assert not load_params(name, REPO_PARAMS).is_production
    assert load_params("staging", REPO_PARAMS).destructive is False


def test_an_external_env_reads_its_endpoints_from_the_named_variables(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WB_TEST_AUTH_URL", raising=False)
    services = {"auth": {"url_env": "WB_TEST_AUTH_URL"}}
    write(tmp_path, "ext", params_text(stack="external", allowed_hosts=["127.0.0.1"], services=services))
    with pytest.raises(ConfigError, match=r"services\.auth\.url_env names WB_TEST_AUTH_URL, which is not set"):
        load_env("ext", tmp_path)
    monkeypatch.setenv("WB_TEST_AUTH_URL", "http://127.0.0.1:8123")
    env = load_env("ext", tmp_path)
    assert (env.stack, env.service("auth").host, env.service("auth").port) == ("external", "127.0.0.1", 8123)


def test_an_external_env_must_say_where_its_services_may_live(tmp_path: Path) -> None:
    services = {"auth": {"url": "http://127.0.0.1:1"}}
    write(tmp_path, "ext", params_text(stack="external", allowed_hosts=[], services=services))
    with pytest.raises(ConfigError, match=r"an external env lists its services and the hosts they may live on"):
        load_env("ext", tmp_path)
    write(tmp_path, "both", params_text(services={"auth": {"url": "http://a", "url_env": "X"}}))
    with pytest.raises(ConfigError, match=r"give url or url_env, not both"):
        load_env("both", tmp_path)


def test_the_repo_external_env_is_external_and_not_destructive() -> None:
    params = load_params("external", REPO_PARAMS)
    assert (params.stack, params.destructive) == ("external", False)
    assert all(svc.url is None and svc.url_env for svc in params.services.values()), params.services
