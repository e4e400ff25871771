"""The embedded stack, for real: processes start, answer, are reused, and only ours are stopped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from workbook.errors import StackError
from workbook.stack.lifecycle import StackLease
from workbook.stack.manager import Stack, ephemeral_range, free_port
from workbook.stack import standby
from workbook.stack.registry import SERVICES
from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths, embedded_endpoints, stack_secret


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    s = Stack(root=tmp_path_factory.mktemp("stackroot"))
    try:
        yield s
    finally:
        s.down()


def pids(stack: Stack) -> dict[str, int]:
    return {name: svc.pid for name, svc in stack.state().services.items()}


def test_up_starts_every_service_answering(stack: Stack) -> None:
    started, reused = stack.up()
    assert sorted(started) == sorted(s.name for s in SERVICES) and reused == []
    rows = {r.name: r for r in stack.status()}
    assert all(r.running for r in rows.values())
    assert rows["postgres"].version.startswith("16")
    assert rows["redis"].version.split(".")[0].isdigit()
    assert rows["clickhouse"].version[:2].isdigit()
    for r in rows.values():
        assert "127.0.0.1" in r.url
    services = embedded_endpoints(stack.paths.root)
    assert all(services[n].password for n in ("postgres", "redis", "clickhouse"))
    assert oct(stack.paths.secrets.stat().st_mode)[-3:] == "600"


def test_second_up_reuses_even_from_two_processes(stack: Stack) -> None:
    stack.up()
    before = pids(stack)
    code = ("from workbook.stack.manager import Stack; from pathlib import Path; import sys;"
            f"print(Stack(root=Path({str(stack.paths.root)!r})).up())")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert pids(stack) == before
    assert all("([]," in out for out in outs), outs  # nothing started, everything reused


def test_kill_then_restart_keeps_the_port(stack: Stack) -> None:
    stack.up()
    before = stack.state().services["redis"]
    stack.kill("redis")
    assert not {r.name: r for r in stack.status()}["redis"].running
    # One service down (another notebook's fault) leaves the endpoints known; none running does not.
    assert embedded_endpoints(stack.paths.root)["redis"].url == before.url
    after = stack.restart("redis")
    assert after.url == before.url and after.pid != before.pid
    assert {r.name: r for r in stack.status()}["redis"].running


def test_a_backend_restart_is_its_warm_standby_and_leaves_a_new_one(stack: Stack) -> None:
    stack.up()
    before = stack.state().services["backend2"]
    warm = before.standby()
    assert warm is not None and "workbook.stack.standby" in " ".join(warm.cmdline())
    after = stack.restart("backend2")
    assert after.pid == before.standby_pid, "the restart started cold, not from the standby"
    assert after.url == before.url and httpx.get(f"{after.url}/health/ready").status_code == 200
    assert after.standby_pid not in (None, before.standby_pid) and after.standby() is not None


def test_a_standby_started_for_another_configuration_is_not_used(stack: Stack) -> None:
    stack.up()
    state = stack.state()
    before = state.services["backend2"]
    state.services["backend2"].standby_for = "another configuration"
    state.write(stack.paths)
    after = stack.restart("backend2")
    assert after.pid != before.standby_pid, "a standby for another configuration became the service"
    assert not psutil.pid_exists(before.standby_pid or 0) or before.standby() is None, "the unusable standby lives on"
    assert after.standby() is not None


def test_down_stops_only_processes_it_started(stack: Stack) -> None:
    stack.up()
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    real_redis = stack.state().services["redis"].process()
    assert real_redis is not None
    try:
        state = stack.state()
        # A recorded pid whose start time differs is some other process (pid reuse): hands off.
        state.services["redis"].pid = stranger.pid
        state.write(stack.paths)
        ours = [p for n, p in pids(stack).items() if n != "redis"]
        ours += [svc.standby_pid for svc in state.services.values() if svc.standby() is not None]
        stopped = stack.down()
        assert "redis" not in stopped
        assert stranger.poll() is None, "down() killed a process the stack did not start"
        for pid in ours:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        stranger.kill()
        stranger.wait()
        # The doctored state orphaned the real redis: stop it by the process we noted.
        real_redis.kill()
        real_redis.wait(10)


class Crashes(ServiceSpec):
    name = "crasher"
    start_timeout_s = 10

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        return Launch([sys.executable, "-c", "import sys; print('config is broken: no such key'); sys.exit(3)"])

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        raise ConnectionRefusedError


def test_failed_start_names_the_service_and_shows_its_log(tmp_path: Path) -> None:
    s = Stack(root=tmp_path, services=[SERVICES[1], Crashes()])  # redis + a broken service
    with pytest.raises(StackError) as e:
        s.up()
    assert "crasher exited with code 3" in str(e.value)
    assert "config is broken: no such key" in str(e.value)
    # What this up() started (redis) is stopped again: nothing left behind.
    assert s.state().services == {}
    # redis rewrites its process title, so look at where processes run, too.
    leftovers = [p for p in psutil.process_iter(["cmdline", "cwd"])
                 if str(tmp_path) in " ".join(p.info["cmdline"] or []) + (p.info["cwd"] or "")]
    assert leftovers == []


def test_state_file_names_no_password(stack: Stack) -> None:
    stack.up()
    secrets = json.loads(stack.paths.secrets.read_text()).values()
    state_text = stack.paths.state.read_text()
    assert not any(s in state_text for s in secrets)


def test_a_killed_process_of_another_parent_counts_as_gone(tmp_path: Path) -> None:
    """run_all starts the stack, a kernel kills a service: the victim is a zombie of run_all
    until reaped, and waiting for it must not time out (it did, for 15 s, before)."""
    import os
    import signal
    import time

    from workbook.stack.manager import _wait_gone

    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               "p = subprocess.Popen(['sleep', '60']); print(p.pid, flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        os.kill(child.pid, signal.SIGKILL)
        t0 = time.monotonic()
        _wait_gone(child, 5)
        assert time.monotonic() - t0 < 2
    finally:
        parent.kill()
        parent.wait()


def test_a_shared_stack_is_stopped_by_the_last_run_out(tmp_path: Path) -> None:
    s = Stack(root=tmp_path, services=[SERVICES[1]])  # redis
    said: list[str] = []
    first = StackLease("local", say=said.append, stack=s)
    try:
        first.up()
        second = StackLease("local", say=said.append, stack=s)  # began while the first one's stack ran
        assert first.ours and not second.ours
        first.release()
        assert s.is_up(), "the run that started the stack stopped it under another run still using it"
        assert "another run still uses it" in said[-1]
        second.release()
        assert s.state().services == {} and not s.paths.stop_when_unused.exists()
        assert said[-1].startswith("stopped the embedded stack another run started")
    finally:
        s.down()


def test_a_kept_stack_is_not_handed_on(tmp_path: Path) -> None:
    s = Stack(root=tmp_path, services=[SERVICES[1]])
    try:
        first = StackLease("local", stack=s)
        first.up()
        kept = StackLease("local", keep=True, stack=s)
        first.release()
        kept.release()
        assert s.is_up() and not s.paths.stop_when_unused.exists()
        later = StackLease("local", stack=s)  # finds the kept stack running: someone's, not its own
        later.release()
        assert s.is_up()
    finally:
        s.down()


def test_picked_ports_lie_outside_the_ephemeral_range() -> None:
    # Inside it, an outgoing connection made between the pick and the server's bind can take
    # the port, and the service then fails to start ("address in use").
    low, high = ephemeral_range()
    ports = {free_port() for _ in range(50)}
    assert all(not low <= p <= high for p in ports), sorted(ports)
    assert len(ports) > 40, "picks repeat: two services started together would collide"
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports.pop()))


def test_a_run_starting_the_stack_starts_it_on_fresh_data(tmp_path: Path) -> None:
    s = Stack(root=tmp_path, services=[SERVICES[1]])  # redis

    def client() -> redis.Redis:
        svc = s.state().services["redis"]
        return redis.Redis.from_url(svc.url, password=stack_secret(s.paths, "redis"))

    try:
        with StackLease("local", stack=s):
            client().set("from-the-first-run", 1)
        with StackLease("local", stack=s) as second:
            assert second.ours
            assert client().get("from-the-first-run") is None, "a run that started the stack met an old run's data"
            assert (s.paths.previous / "data" / "redis").is_dir(), "the last run's data was not kept aside"
            client().set("from-the-second-run", 1)
            with StackLease("local", stack=s) as third:  # began while the second's stack ran: reuses it as it is
                assert not third.ours
                assert client().get("from-the-second-run") == b"1"
    finally:
        s.down()


def test_nothing_stored_leaves_the_kept_generation(tmp_path: Path) -> None:
    s = Stack(root=tmp_path, services=[SERVICES[1]])
    kept = s.paths.previous / "data" / "redis" / "appendonly.aof"
    kept.parent.mkdir(parents=True)
    kept.write_text("the last run's")
    s.paths.ensure()  # an empty data/, as every run makes before any service stored anything
    assert not s.has_data()
    s.set_data_aside()
    assert kept.read_text() == "the last run's"


def test_a_standby_is_stale_once_its_code_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "edited_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "server.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    started = time.time()
    assert not standby.stale(("edited_pkg.server",), started + 1)
    os.utime(package / "server.py", (started + 5, started + 5))   # edited after the standby imported it
    assert standby.stale(("edited_pkg.server",), started + 1)
