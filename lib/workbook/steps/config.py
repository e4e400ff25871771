"""Steps of 05_config: the platform's effective configuration (`/health/config`), hot reload,
params drift between envs, readiness's dependency map, and where secrets may not appear."""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from workbook import faults
from workbook.clients import tls
from workbook.clients.platform.auth import AsyncAuth
from workbook.clients.platform.backend import AsyncBackend, backend
from workbook.clients.platform.common import ApiClient, User
from workbook.clients.scope import Check
from workbook.params import Env, Expect, load_params
from workbook.paths import project_root
from workbook.polling import poll
from workbook.runner.secrets_scan import env_secrets, variants
from workbook.stack.manager import Stack
from workbook.stack.platform_config import auth_env, backend_env
from workbook.stack.state import stack_secret

SOURCES = frozenset({"default", "file", "env", "env_file", "reloaded"})
# Where each service reports its effective configuration and takes a hot reload.
CONFIG_PATH = "/health/config"
RELOAD_PATH = {"auth": "/auth/admin/config", "backend": "/api/admin/config"}


async def admin_user(scope: Check, auth: AsyncAuth) -> User:
    """A logged-in admin (role granted in auth's database: destructive envs only): the
    configuration endpoints are for operators."""
    user = await auth.new_user(scope)
    await auth.grant_role(user, "admin")
    return user


async def effective_config(client: ApiClient, admin: User) -> dict[str, Any]:
    """`GET /health/config` as an admin: values with their sources, secrets as set/unset, the hash."""
    resp = await client.get(CONFIG_PATH, token=admin.access)
    assert resp.status_code == 200, f"{client.service} {CONFIG_PATH}: {resp.status_code} {resp.text[:300]}"
    return resp.json()


def values(config: Mapping[str, Any]) -> dict[str, Any]:
    return {name: v["value"] for name, v in config["values"].items()}


def _parse(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def expected_settings(service: str, expect: Expect) -> dict[str, Any]:
    """The settings `expect` fixes for a service, by setting name: the same mapping the embedded
    stack starts the services with (workbook.stack.platform_config), so params is the one source."""
    variables, prefix = (auth_env(expect), "AUTH_") if service == "auth" else (backend_env(expect), "BACKEND_")
    return {k.removeprefix(prefix).lower(): _parse(v) for k, v in variables.items()}


def mismatches(reported: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings whose reported value is not the expected one (numbers compared as numbers)."""
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return float(a) == float(b)
        return a == b

    return {k: (reported.get(k), v) for k, v in expected.items() if not same(reported.get(k), v)}


def flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted paths (a dict of plans stays one value: it is one setting)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping) and k != "plans":
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def expect_drift(env: Env) -> tuple[dict[str, tuple[Any, Any]], list[str]]:
    """How this env's `expect` differs from its reference env's (`expect.config.parity`), path by
    path, and the paths params does not allow to differ. The parity section itself is left out:
    it describes the comparison, not the platform."""
    parity = env.expect.config.parity
    here = flat(env.expect.model_dump(exclude={"config"}))
    there = flat(load_params(parity.reference_env).expect.model_dump(exclude={"config"}))
    diff = {p: (here.get(p), there.get(p)) for p in sorted(set(here) | set(there)) if here.get(p) != there.get(p)}
    allowed = parity.allowed_drift
    refused = [p for p in diff if not any(p == a or p.startswith(f"{a}.") for a in allowed)]
    return diff, refused


def instance_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    va, vb = values(a), values(b)
    return {k: (va.get(k), vb.get(k)) for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)}


# -- hot reload --------------------------------------------------------------------------------------

async def reload_raw(client: ApiClient, admin: User, service: str, changes: dict[str, Any]) -> httpx.Response:
    return await client.patch(RELOAD_PATH[service], token=admin.access, json={"changes": changes})


async def reload(ck: Check, client: ApiClient, admin: User, service: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Hot-reload `changes`; every instance goes back to its started configuration when `ck` ends."""
    ck.defer(reset, client, admin, service)
    resp = await reload_raw(client, admin, service, changes)
    assert resp.status_code == 200, f"reload {changes}: {resp.status_code} {resp.text[:300]}"
    return resp.json()


async def reset(client: ApiClient, admin: User, service: str) -> None:
    resp = await client.delete(RELOAD_PATH[service], token=admin.access)
    assert resp.status_code == 200, f"config reset: {resp.status_code} {resp.text[:300]}"


async def converged(instances: Sequence[ApiClient], admin: User, name: str, value: Any, within_s: float) -> float:
    """Seconds until every instance reports `name` = `value` (PollTimeout past `within_s`)."""
    t0 = time.perf_counter()
    for inst in instances:
        await poll(lambda inst=inst: effective_config(inst, admin), until=lambda c: values(c)[name] == value,
                   within_s=max(0.1, within_s - (time.perf_counter() - t0)), every_s=0.05,
                   what=f"{inst.service} reporting {name}={value!r}")
    return time.perf_counter() - t0


# -- secrets -------------------------------------------------------------------------------------------

def secrets_in(text: str, env: Env) -> list[str]:
    """Names (never values) of the env's secrets found in `text`, in any encoding the run's scan knows."""
    return sorted(name for name, secret in env_secrets(env).items()
                  if any(v.text in text for v in variants(secret)))


def stack_secret_names(env: Env) -> list[str]:
    """The embedded stack's generated secrets (the platform's passwords and client secrets)."""
    if env.stack != "embedded":
        return []
    paths = Stack(project_root()).paths
    return sorted(json.loads(paths.secrets.read_text())) if paths.secrets.is_file() else []


def logs_with_secrets(env: Env, services: Iterable[str]) -> dict[str, list[str]]:
    """Per service log of the embedded stack, the names of stack secrets it contains (raw or
    encoded). The secrets are read here and never returned."""
    stack = Stack(project_root())
    secrets = {name: stack_secret(stack.paths, name) for name in stack_secret_names(env)}
    found: dict[str, list[str]] = {}
    for service in services:
        text = stack.paths.log(service).read_text(errors="replace")
        hits = sorted(n for n, s in secrets.items() if len(s) >= 8 and any(v.text in text for v in variants(s)))
        found[service] = hits
    return found


def secret_file(ck: Check, value: str) -> str:
    """A 0600 file holding `value` (a container secret's shape), removed with the check."""
    path = Stack(project_root()).paths.base / f"secret-{ck.ns}"
    path.write_text(value)
    os.chmod(path, 0o600)
    ck.defer(lambda: path.unlink(missing_ok=True))
    return str(path)


def config_file(ck: Check, settings: Mapping[str, Any]) -> str:
    """A JSON settings file (`<PREFIX>CONFIG_FILE`), removed with the check."""
    path = Stack(project_root()).paths.base / f"config-{ck.ns}.json"
    path.write_text(json.dumps(settings))
    ck.defer(lambda: path.unlink(missing_ok=True))
    return str(path)


# -- hosts and readiness ---------------------------------------------------------------------------

def host_allowed(url: str, patterns: Sequence[str]) -> bool:
    host = urlsplit(url).hostname or ""
    return any(fnmatch.fnmatch(host, p) for p in patterns)


async def ready(client: ApiClient) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/health/ready")
    return resp.status_code, resp.json()


def dependency_map(body: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """name -> (status, required) from a readiness answer."""
    return {n: (d["status"], d["required"]) for n, d in body["dependencies"].items()}


# -- one instance, configured in every layer -------------------------------------------------------

# What the layered instance is given, layer by layer: each setting is set where the check says.
LAYERED_FILE = {"ws_rate_burst": 11, "ws_rate_per_s": 7.0, "log_level": "WARNING"}
# The stack sets the burst from params; the layered instance drops that so the file's value shows.
LAYERED_ENV: dict[str, str | None] = {"BACKEND_WS_RATE_PER_S": "9.0", "BACKEND_WS_RATE_BURST": None}


async def layered_backend(scope: Check, env: Env) -> AsyncBackend:
    """A second backend instance configured in every layer: a config file (LAYERED_FILE), the
    environment over it for one of those settings (LAYERED_ENV), and the model API key both as a
    variable (the stack's working key) and as a `_FILE` holding a wrong one; stopped with `scope`."""
    overrides: dict[str, str | None] = {
        "BACKEND_CONFIG_FILE": config_file(scope, LAYERED_FILE), **LAYERED_ENV,
        "BACKEND_LLM_API_KEY_FILE": secret_file(scope, f"wrong-key-{scope.ns}")}
    inst = await faults.started_instance(env, "backend", overrides, scope)
    await inst.wait_answering("/health/live", env.timeouts.startup_s)
    client = backend(env, url=inst.url)
    scope.defer(client.aclose)
    return client


# -- the OIDC provider, as auth is configured to use it ----------------------------------------------

async def provider_metadata(provider_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10, verify=tls.context()) as http:
        resp = await http.get(f"{provider_url.rstrip('/')}/.well-known/openid-configuration")
    assert resp.status_code == 200, f"provider discovery: {resp.status_code}"
    return resp.json()


async def oidc_authorize_url(auth: AsyncAuth) -> httpx.URL:
    """The provider authorization URL auth sends a browser to (its own client, redirect URI, PKCE)."""
    resp = await auth.get("/auth/oidc/login")
    assert resp.status_code == 302, f"/auth/oidc/login: {resp.status_code}"
    return httpx.URL(resp.headers["location"])


def with_query(url: httpx.URL, **changes: str) -> httpx.URL:
    for key, value in changes.items():
        url = url.copy_set_param(key, value)
    return url


def query_of(url: str) -> dict[str, str]:
    return dict(httpx.URL(url).params)


async def provider_get(url: httpx.URL) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, follow_redirects=False, verify=tls.context()) as http:
        return await http.get(url)


async def token_with_secret(provider_url: str, client_id: str, secret: str) -> httpx.Response:
    """The provider's token endpoint with a client secret (and a code that was never issued)."""
    meta = await provider_metadata(provider_url)
    async with httpx.AsyncClient(timeout=10, verify=tls.context()) as http:
        return await http.post(meta["token_endpoint"], auth=(client_id, secret),
                               data={"grant_type": "authorization_code", "code": "never-issued",
                                     "redirect_uri": "https://example.invalid/cb", "code_verifier": "x" * 43})


# -- metrics and timed calls ----------------------------------------------------------------------------

def metric_names(text: str) -> set[str]:
    """Metric family names of a Prometheus exposition (parsed: a malformed one raises)."""
    from prometheus_client.parser import text_string_to_metric_families

    # prometheus_client declares a `<counter>_created` gauge (each series' start time) only once a
    # labelled counter has a series: a timestamp per series, not part of the metric set.
    return {family.name for family in text_string_to_metric_families(text) if not family.name.endswith("_created")}


async def timed_calls(calls: Sequence[Any]) -> list[tuple[int, str, float]]:
    """Each call's (status, body, ms), one after the other; a transport error or a client-side
    timeout is status 0, so a hung call shows as itself instead of failing the check elsewhere."""
    out: list[tuple[int, str, float]] = []
    for call in calls:
        t0 = time.perf_counter()
        try:
            resp = await call()
            out.append((resp.status_code, resp.text, (time.perf_counter() - t0) * 1000))
        except httpx.HTTPError as e:
            out.append((0, f"{type(e).__name__}: {e}", (time.perf_counter() - t0) * 1000))
    return out
