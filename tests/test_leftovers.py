"""The leftovers sweep against the embedded stack: a check that forgets its `ck.defer` is named,
by run_all and by `pytest --nbmake` alike, and the run fails; checks that clean up (users they
register through the platform client included) leave nothing and name nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests_support import REPO, checks_notebook, params_text, run, write_notebook

from workbook.clients import redis
from workbook.env import load_env
from workbook.results import RunResults
from workbook.runner.run import RunOptions, Runner

# Each forgets something of its own: a key in its namespace, a user (with a thread) it made
# without the platform client; the last makes users through the platform client (registered,
# and logged in through OIDC), which delete themselves.
FORGETS_KEY = '''async with check("key_left_behind") as ck:
    r = redis.client(wb.env)
    ck.defer(r.aclose)
    await r.set(f"{ck.ns}:left", 1)'''
FORGETS_USER = '''async with check("user_left_behind") as ck:
    import httpx
    from workbook.clients.platform import unique_email, new_password
    email, pw = unique_email(ck.ns), new_password()
    async with httpx.AsyncClient(timeout=30) as c:
        assert (await c.post(wb.auth.url + "/auth/register", json={"email": email, "password": pw})).status_code == 201
        access = (await c.post(wb.auth.url + "/auth/login", json={"email": email, "password": pw})).json()["access_token"]
        thread = await c.post(wb.backend.url + "/api/threads", json={"title": "kept"}, headers={"Authorization": f"Bearer {access}"})
        assert thread.status_code == 201'''
CLEANS_UP = '''async with check("cleans_up") as ck:
    from workbook.clients.platform import unique_email, new_password
    user = await auth.new_user(ck)
    await backend.new_thread(ck, user)
    assert (await auth.register_raw(unique_email(ck.ns), new_password())).status_code == 201
    r = redis.client(wb.env)
    ck.defer(r.aclose)
    await r.set(f"{ck.ns}:gone", 1)
    ck.defer(r.delete, f"{ck.ns}:gone")
    from workbook.clients.platform import oidc_flow
    flow = await oidc_flow(wb.env, auth)
    ck.defer(flow.aclose)
    body = await flow.login(ck, sub=unique_email(ck.ns))
    # Its session ended, the OIDC user (no password) is deleted after a fresh login at the provider.
    await auth.revoke_all_sessions(body["access_token"])'''
SETUP = ("from workbook.clients import redis\nauth, backend = wb.auth, wb.backend")


def forgetful(directory: Path) -> Path:
    return checks_notebook(directory / "97_forgetful.ipynb", SETUP, FORGETS_KEY, FORGETS_USER, CLEANS_UP,
                           section="sweep")


def clean_up_after(results: RunResults) -> None:
    """What the forgetful checks left, removed so the stack stays as it was (by key, and the
    user through the API as its owner would)."""
    env = load_env("local")

    async def main() -> None:
        r = redis.client(env)
        try:
            for item in results.leftovers.items if results.leftovers else []:
                if item.store == "redis" and item.example.endswith(":left"):
                    await r.delete(item.example)
        finally:
            await r.aclose()

    asyncio.run(main())
    for item in results.leftovers.items if results.leftovers else []:
        if item.where == "auth.users (email)":
            # The forgetful check's password is gone with its kernel: an admin would delete the
            # account; here the test's own access to auth's database stands in for one.
            _delete_by_admin(env, item.example)


def _delete_by_admin(env, email: str) -> None:
    from workbook.clients import postgres
    from workbook.clients.platform import auth as auth_client, new_password, random_ip

    async def main() -> None:
        async with auth_client(env) as platform:
            admin = await platform.register(f"wb_test_admin.{os.getpid()}@example.test", new_password(), random_ip())
            conn = await postgres.connect(env, database="auth")
            try:
                await conn.execute("UPDATE users SET role = 'admin' WHERE id = $1::uuid", admin.id)
                victim = await conn.fetchval("SELECT id::text FROM users WHERE email = $1", email)
            finally:
                await conn.close()
            tokens = await platform.login(admin)
            assert (await platform.admin_delete_user_raw(tokens.access, victim)).status_code == 202
            await platform.delete_user(admin)

    asyncio.run(main())


def assert_named(results: RunResults, notebook: str) -> None:
    assert results.leftovers is not None
    by_place = {i.where: i for i in results.leftovers.items}
    key = next(i for w, i in by_place.items() if w.startswith("keys <namespace>:left"))
    assert key.checks == [f"{notebook}.sweep.key_left_behind"], key
    user = by_place["auth.users (email)"]
    assert user.count == 1 and user.checks == [f"{notebook}.sweep.user_left_behind"], user
    threads = by_place["backend.threads (owner_id)"]
    assert threads.count == 1 and threads.checks == [f"{notebook}.sweep.user_left_behind"], threads
    named = {c for i in results.leftovers.items for c in i.checks}
    assert named == {f"{notebook}.sweep.key_left_behind", f"{notebook}.sweep.user_left_behind"}, named
    assert [s.swept for s in results.leftovers.stores] == [True, True, True], results.leftovers.stores


@pytest.mark.usefixtures("embedded_stack")
def test_run_all_names_the_check_that_forgot_its_defer(tmp_path: Path) -> None:
    forgetful(tmp_path / "notebooks")
    code = Runner(RunOptions(env="local", notebooks_dir=tmp_path / "notebooks", outputs_dir=tmp_path / "outputs",
                             parallel=1, timeout_s=300)).run()
    results = RunResults.read(tmp_path / "outputs" / "latest" / "results.json")
    try:
        assert [c.status for c in results.checks] == ["passed"] * 3, results.checks
        assert code == 1, "every check passed, yet the run left something: it must fail"
        assert_named(results, "97_forgetful")
        data = json.loads((tmp_path / "outputs" / "latest" / "results.json").read_text())
        assert data["leftovers_found"] == results.leftovers_found > 0
        page = (tmp_path / "outputs" / "latest" / "report.html").read_text()
        assert f'<p id="leftovers" class="secrets found">{results.leftovers_found} leftovers' in page
        assert "97_forgetful.sweep.user_left_behind" in page
        junit = (tmp_path / "outputs" / "latest" / "junit.xml").read_text()
        assert 'name="run_left_nothing"' in junit and "key_left_behind" in junit
    finally:
        clean_up_after(results)


@pytest.mark.usefixtures("embedded_stack")
def test_pytest_names_the_check_that_forgot_its_defer(tmp_path: Path) -> None:
    forgetful(tmp_path / "notebooks")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbmake", str(tmp_path / "notebooks"),
                           "-p", "no:cacheprovider", "-o", "addopts=", "-n", "2"],
                          cwd=REPO, env={**env, "WORKBOOK_ROOT": str(REPO)}, capture_output=True, text=True,
                          timeout=600)
    out = done.stdout + done.stderr
    run = max((REPO / "outputs" / "pytest").glob("*-pytest-*"), key=lambda p: p.stat().st_mtime)
    ledger = json.loads(next(run.glob("97_forgetful.results.json")).read_text())
    prefix = ledger["run_id"]
    found = [line for line in out.splitlines() if line.startswith("LEFTOVER")]
    try:
        assert "4 passed" in out and done.returncode == 1, out
        assert "LEFTOVER redis keys <namespace>:left: 1, left by 97_forgetful.sweep.key_left_behind" in out, out
        assert "LEFTOVER postgres auth.users (email): 1, left by 97_forgetful.sweep.user_left_behind" in out, out
        assert not [line for line in found if "cleans_up" in line], found
    finally:
        _forget_pytest_run(prefix)


def _forget_pytest_run(run_id: str) -> None:
    """What the pytest run's forgetful checks left, removed (the sweep of that run, read again)."""
    from workbook.checks import namespace
    from workbook.runner.leftovers import RunScope, sweep

    report = sweep(load_env("local"), RunScope(prefix=namespace(run_id), owners=[]), settle_s=0)
    clean_up_after(RunResults(run_id=run_id, env="local", started_at="", leftovers=report))


def test_a_run_refuses_hosts_outside_allowed_hosts(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "params" / "foreign.yaml").write_text(params_text(
        stack="external", allowed_hosts=["127.0.0.1"],
        services={"auth": {"url": "https://auth.staging.example.com"}, "redis": {"url": "redis://127.0.0.1:1/0"}}))
    flag = project / "ran"
    write_notebook(project / "notebooks" / "01_x.ipynb", f"open({str(flag)!r}, 'w').write('ran')")
    assert run(env="foreign") == 2
    assert not flag.exists(), "a notebook ran against a host outside allowed_hosts"
    assert ("error: env 'foreign': refusing to run against hosts outside allowed_hosts ['127.0.0.1']: "
            "auth=auth.staging.example.com") in capsys.readouterr().out
