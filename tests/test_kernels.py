"""KernelPool and its fork server: working, isolated kernels that can be killed, interrupted,
restarted, and leave nothing behind."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from glob import glob
from pathlib import Path

import nbformat
import psutil
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from workbook.runner.forkserver import ForkedKernel, ForkServer
from workbook.runner.kernels import WARM_UP, ForkedKernelManager, KernelPool


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[KernelPool]:
    pool = KernelPool(total=3, prefetch=3, cwd=tmp_path)
    yield pool
    pool.close()


def run(km: KernelManager, code: str, timeout: float = 30) -> tuple[dict, str]:
    """Execute `code`; its execute_reply content and its stdout."""
    out: list[str] = []

    def on_output(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    async def execute() -> dict:
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=timeout)
            return await kc.execute_interactive(code, timeout=timeout, output_hook=on_output)
        finally:
            kc.stop_channels()

    return asyncio.run(execute())["content"], "".join(out)


def running(proc: psutil.Process) -> bool:
    # A zombie has ended: this machine's init does not reap orphans.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def still_running(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while any(running(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in procs if running(p)]


def test_kernel_runs_code_in_the_pool_cwd_and_returns_output(pool: KernelPool, tmp_path: Path) -> None:
    km = pool.take(timeout=60)
    try:
        reply, out = run(km, "import os\nprint(6 * 7, os.getcwd())")
    finally:
        pool.release(km)
    assert reply["status"] == "ok"
    assert out.split() == ["42", os.path.realpath(tmp_path)]


def test_kernels_are_forked_by_the_pools_server(pool: KernelPool) -> None:
    km = pool.take(timeout=60)
    try:
        assert isinstance(km.provisioner.process, ForkedKernel)
        pid = KernelPool.pid(km)
        assert pid is not None
        server = psutil.Process(pid).parent()
        assert server is not None and server.ppid() == os.getpid()
        assert "workbook.runner.forkserver" in server.cmdline()
    finally:
        pool.release(km)


def test_each_kernel_is_a_new_process_with_a_fresh_namespace_and_random_state(pool: KernelPool) -> None:
    first = pool.take(timeout=60)
    try:
        _, first_random = run(first, "import random\nx = 1\nprint(random.random())")
        first_pid = KernelPool.pid(first)
    finally:
        pool.release(first)
    second = pool.take(timeout=60)
    try:
        reply, out = run(second, "import random\nprint('x' in globals(), random.random())")
        second_pid = KernelPool.pid(second)
    finally:
        pool.release(second)
    assert reply["status"] == "ok"
    has_x, second_random = out.split()
    assert has_x == "False"
    assert first_pid != second_pid
    assert first_random.strip() != second_random  # each fork reseeds `random`


def test_kill_ends_a_running_notebook_with_dead_kernel_error(pool: KernelPool) -> None:
    km = pool.take(timeout=60)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(60)")])
    outcome: list[BaseException | None] = []

    def execute() -> None:
        try:
            asyncio.run(NotebookClient(nb, km=km, timeout=30).async_execute())
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    # In a thread, so that an nbclient that never notices fails the test instead of hanging it.
    runner = threading.Thread(target=execute, daemon=True)
    runner.start()
    try:
        time.sleep(2)
        KernelPool.kill(km)
        runner.join(timeout=5)
    finally:
        pool.release(km)
    assert outcome and isinstance(outcome[0], DeadKernelError)


def test_interrupt_stops_the_cell_and_the_kernel_goes_on(pool: KernelPool) -> None:
    km = pool.take(timeout=60)

    async def interrupted() -> tuple[dict, dict]:
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=30)
            # stop_on_error=False: otherwise the kernel aborts a request that arrives while it is still
            # unwinding the interrupted one (seen under load), which is not what this test is about.
            msg_id = kc.execute("import time\ntime.sleep(30)", stop_on_error=False)
            # SIGINT only interrupts once the cell runs: wait for it to start.
            while (msg := await kc.get_iopub_msg(timeout=10))["msg_type"] != "execute_input":
                pass
            assert msg["parent_header"]["msg_id"] == msg_id
            await asyncio.sleep(0.3)
            km.interrupt_kernel()
            reply = await kc.get_shell_msg(timeout=30)
            assert reply["parent_header"]["msg_id"] == msg_id
            return reply["content"], (await kc.execute_interactive("1", timeout=10))["content"]
        finally:
            kc.stop_channels()

    try:
        reply, after = asyncio.run(interrupted())
    finally:
        pool.release(km)
    assert (reply["status"], reply["ename"]) == ("error", "KeyboardInterrupt")
    assert after["status"] == "ok"


def test_restart_forks_a_new_kernel(pool: KernelPool) -> None:
    km = pool.take(timeout=60)
    try:
        run(km, "x = 1")
        old_pid = KernelPool.pid(km)
        assert old_pid is not None
        old = psutil.Process(old_pid)
        km.restart_kernel(now=True)
        assert isinstance(km.provisioner.process, ForkedKernel)
        assert KernelPool.pid(km) != old_pid
        assert not still_running([old], timeout=5)
        reply, out = run(km, "print('x' in globals())")
    finally:
        pool.release(km)
    assert reply["status"] == "ok"
    assert out.strip() == "False"


def test_close_leaves_no_process_and_no_file(tmp_path: Path) -> None:
    # Other fixtures of the session (a stack) may have children of their own.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    pool = KernelPool(total=3, prefetch=3, cwd=tmp_path)
    released, kept = pool.take(timeout=60), pool.take(timeout=60)  # the third may still be starting
    pool_dir = Path(kept.ip).parent
    connection_files = [released.connection_file, kept.connection_file]
    assert glob(f"{released.ip}-*") and glob(f"{kept.ip}-*")
    pool.release(released)
    assert not glob(f"{released.ip}-*")  # a released kernel's sockets go with it
    procs = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert len(procs) >= 3  # the server and at least two kernels
    pool.close()
    assert not still_running(procs, timeout=5)
    assert not [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not pool_dir.exists()
    assert not [f for f in connection_files if os.path.exists(f)]


def test_kernels_end_with_their_server_and_later_kernels_start_without_it(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    server = ForkServer.start(WARM_UP)
    forked = ForkedKernelManager(server, kernel_name="python3", transport="ipc", ip=str(tmp_path / "a"))
    plain = ForkedKernelManager(server, kernel_name="python3", transport="ipc", ip=str(tmp_path / "b"))
    try:
        forked.start_kernel()
        server.proc.kill()
        server.proc.wait()
        deadline = time.monotonic() + 5  # ipykernel polls for its parent every second
        while forked.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not forked.is_alive()
        plain.start_kernel()
        assert isinstance(plain.provisioner.process, subprocess.Popen)
        assert run(plain, "1")[0]["status"] == "ok"
    finally:
        forked.shutdown_kernel(now=True)
        plain.shutdown_kernel(now=True)
        server.close()
    assert "fork server exited" in caplog.text


def test_server_and_kernels_die_with_their_owner() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom workbook.runner.kernels import KernelPool\n"
         "km = KernelPool(total=1, prefetch=1).take(timeout=60)\n"
         "print(KernelPool.pid(km), km.ip, km.connection_file, flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pid, ip, connection_file = owner.stdout.readline().split()
    try:
        kernel = psutil.Process(int(pid))
        server = kernel.parent()
        assert server is not None and server.ppid() == owner.pid
        owner.kill()
        owner.wait()
        assert not still_running([server, kernel], timeout=5)
    finally:
        # What a SIGKILLed owner cannot clean up, with fork server or without.
        shutil.rmtree(Path(ip).parent, ignore_errors=True)
        Path(connection_file).unlink(missing_ok=True)


def test_without_fork_kernels_start_as_new_processes_and_it_is_said_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delattr(os, "fork")
    caplog.set_level(logging.WARNING, logger="workbook.runner.kernels")
    pool = KernelPool(total=2, prefetch=2, cwd=tmp_path)
    try:
        for _ in range(2):
            km = pool.take(timeout=60)
            assert isinstance(km.provisioner.process, subprocess.Popen)
            assert run(km, "print(1)")[1] == "1\n"
            pool.release(km)
    finally:
        pool.close()
    assert [r.message for r in caplog.records].count(
        "no kernel fork server (this platform cannot fork): every kernel starts a new interpreter") == 1
