"""Pre-started Jupyter kernels on IPC transport.

Starting a kernel as a new interpreter costs about a second of CPU, most of the time a
trivial notebook takes. So each pool has a fork server (workbook.runner.forkserver) that has done
the imports once and forks every kernel; the pool starts the next kernels while earlier
notebooks run and hands each notebook a fresh, ready kernel (never a reused one: notebooks
share no state). Kernels talk over Unix sockets in a private directory, one path prefix per
kernel, which removes the TCP port races parallel papermill/nbmake runs are known for.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.manager import KernelManager
from jupyter_client.provisioning import LocalProvisioner
from jupyter_core.utils import run_sync
from traitlets import DottedObjectName

from workbook.runner.forkserver import ForkServer, ForkServerError

log = logging.getLogger(__name__)

# Modules every notebook imports; loading them while the kernel waits takes them off the
# notebook's own clock. Only imports: the user namespace stays empty. The fork server imports
# them before it forks, so in its kernels this only checks that the kernel answers.
WARM_UP = "import workbook, workbook.checks, workbook.display, asyncpg, redis, httpx, clickhouse_connect"


class ForkedKernelProvisioner(LocalProvisioner):
    """LocalProvisioner whose ipykernel kernels are forked by a fork server. Interrupt, kill,
    wait, shutdown and restart stay LocalProvisioner's, applied to a Popen-like handle; any
    other kernel, or launch option a fork cannot honour, gets LocalProvisioner's own launch."""

    fork_server: ForkServer | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        server = self.fork_server
        if (server is None or server.lost or cmd[:3] != [sys.executable, "-m", "ipykernel_launcher"]
                or self._scrub_kwargs(kwargs).keys() - {"env", "cwd"}):
            return await super().launch_kernel(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        # A forked kernel's parent is the server: ipykernel must watch it, not a pid from the
        # server's environment. Parallel kernels writing one history database only contend.
        args = [*cmd[3:], f"--IPKernelApp.parent_handle={server.pid}", "--HistoryManager.enabled=False"]
        process = await server.spawn(args, cwd=cwd, env=kwargs["env"])
        self.process = process  # type: ignore[assignment]
        # The child calls setsid(), as launch_kernel's start_new_session: interrupts and kills
        # go to its process group.
        self.pid = self.pgid = process.pid  # type: ignore[assignment]
        self.cwd = cwd  # type: ignore[assignment]
        return self.connection_info


class ForkedKernelManager(KernelManager):
    """A KernelManager on a ForkedKernelProvisioner; to nbclient and papermill, an ordinary one."""

    # What nbclient's own AsyncKernelManager hands out: nbclient awaits its client, and a
    # blocking one stalls its event loop on IOPub, and with it the poll that turns a killed
    # kernel into DeadKernelError.
    client_class = DottedObjectName("jupyter_client.asynchronous.AsyncKernelClient")

    def __init__(self, fork_server: ForkServer | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # KernelManager keeps a provisioner it already has (as it does across restarts)
        # instead of asking the kernelspec for one.
        self.kernel_id = str(uuid.uuid4())
        provisioner = ForkedKernelProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        provisioner.fork_server = fork_server
        self.provisioner = provisioner


class KernelPool:
    def __init__(self, total: int, prefetch: int, kernel_name: str = "python3",
                 startup_timeout: float = 60, cwd: Path | None = None, env: dict[str, str] | None = None):
        self.total = total
        self.prefetch = max(1, prefetch)
        self.kernel_name = kernel_name
        self.startup_timeout = startup_timeout
        self.cwd = cwd
        self.env = env
        self._dir = Path(tempfile.mkdtemp(prefix="wbk-"))  # short: Unix socket paths max ~107 bytes
        self._ready: queue.Queue[KernelManager | BaseException] = queue.Queue()
        self._slots = threading.Semaphore(self.prefetch)
        self._stop = threading.Event()
        self._live: list[KernelManager] = []
        self._lock = threading.Lock()
        self._server: ForkServer | None = None
        self._thread = threading.Thread(target=self._fill, name="kernel-pool", daemon=True)
        self._thread.start()

    def _environ(self) -> dict[str, str] | None:
        return {**os.environ, **self.env} if self.env else None

    def _start_server(self) -> ForkServer | None:
        try:
            # Started with the kernels' environment: what imports read from it is right for them.
            return ForkServer.start(WARM_UP, env=self._environ(), timeout=self.startup_timeout)
        except ForkServerError as e:
            log.warning("no kernel fork server (%s): every kernel starts a new interpreter", e)
            return None

    def _fill(self) -> None:
        self._server = self._start_server()
        # Kernels start side by side, never more than `prefetch` ahead of the notebooks that
        # take them.
        with ThreadPoolExecutor(self.prefetch, thread_name_prefix="kernel-start") as starters:
            for n in range(self.total):
                self._slots.acquire()
                if self._stop.is_set():
                    return
                starters.submit(self._start_one, n)

    def _start_one(self, n: int) -> None:
        try:
            km = ForkedKernelManager(self._server, kernel_name=self.kernel_name, transport="ipc",
                                     ip=str(self._dir / f"k{n}"))
            with self._lock:
                self._live.append(km)
            env = self._environ()
            km.start_kernel(cwd=str(self.cwd) if self.cwd else None, **({"env": env} if env else {}))
            run_sync(self._warm_up)(km)
            self._ready.put(km)
        except BaseException as e:  # handed to the notebook that would have used this kernel
            self._ready.put(e)

    async def _warm_up(self, km: KernelManager) -> None:
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=self.startup_timeout)
            await kc.execute_interactive(WARM_UP, silent=True, store_history=False, timeout=self.startup_timeout)
        finally:
            kc.stop_channels()

    def take(self, timeout: float | None = None) -> KernelManager:
        item = self._ready.get(timeout=timeout)
        self._slots.release()
        if isinstance(item, BaseException):
            raise RuntimeError(f"kernel failed to start: {item}") from item
        return item

    @staticmethod
    def pid(km: KernelManager) -> int | None:
        proc = getattr(km.provisioner, "process", None)
        return proc.pid if proc is not None else None

    @classmethod
    def kill(cls, km: KernelManager) -> None:
        """Kill a kernel and whatever it spawned; safe from any thread."""
        pid = cls.pid(km)
        if pid is None:
            return
        try:
            root = psutil.Process(pid)
            for p in [*root.children(recursive=True), root]:
                p.kill()
        except psutil.Error:
            pass

    def release(self, km: KernelManager) -> None:
        try:
            if km.has_kernel:
                km.shutdown_kernel(now=True)
        except Exception:
            self.kill(km)
        with self._lock:
            if km in self._live:
                self._live.remove(km)

    def kill_all(self) -> None:
        """Kill every kernel handed out or waiting (Ctrl-C): their notebooks end at once."""
        with self._lock:
            live = list(self._live)
        for km in live:
            self.kill(km)

    def close(self) -> None:
        self._stop.set()
        for _ in range(self.prefetch + 1):
            self._slots.release()
        self._thread.join(timeout=self.startup_timeout)
        with self._lock:
            leftover = list(self._live)
        for km in leftover:
            self.release(km)
        if self._server is not None:
            self._server.close()
        shutil.rmtree(self._dir, ignore_errors=True)
