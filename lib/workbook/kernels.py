"""Pre-started Jupyter kernels on IPC transport.

Starting a kernel costs about a second of CPU, most of the time a trivial notebook takes,
so the pool starts the next kernels while earlier notebooks run and hands each notebook a
fresh, ready kernel (never a reused one: notebooks share no state). Kernels talk over Unix
sockets in a private directory, one path prefix per kernel, which removes the TCP port
races parallel papermill/nbmake runs are known for.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from jupyter_client.manager import KernelManager

# Modules every notebook imports; loading them while the kernel waits takes them off the
# notebook's own clock. Only imports: the user namespace stays empty.
WARM_UP = "import workbook, workbook.checks, workbook.display, asyncpg, redis, httpx, clickhouse_connect"


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
        self._thread = threading.Thread(target=self._fill, name="kernel-pool", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        # Kernels start side by side (each is mostly CPU-bound imports), never more than
        # `prefetch` ahead of the notebooks that take them.
        with ThreadPoolExecutor(self.prefetch, thread_name_prefix="kernel-start") as starters:
            for n in range(self.total):
                self._slots.acquire()
                if self._stop.is_set():
                    return
                starters.submit(self._start_one, n)

    def _start_one(self, n: int) -> None:
        try:
            km = KernelManager(kernel_name=self.kernel_name, transport="ipc", ip=str(self._dir / f"k{n}"))
            with self._lock:
                self._live.append(km)
            extra = {"env": {**os.environ, **self.env}} if self.env else {}
            km.start_kernel(cwd=str(self.cwd) if self.cwd else None, **extra)
            kc = km.client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=self.startup_timeout)
                kc.execute_interactive(WARM_UP, silent=True, store_history=False, timeout=self.startup_timeout)
            finally:
                kc.stop_channels()
            self._ready.put(km)
        except BaseException as e:  # handed to the notebook that would have used this kernel
            self._ready.put(e)

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

    def close(self) -> None:
        self._stop.set()
        for _ in range(self.prefetch + 1):
            self._slots.release()
        self._thread.join(timeout=self.startup_timeout)
        with self._lock:
            leftover = list(self._live)
        for km in leftover:
            self.release(km)
        shutil.rmtree(self._dir, ignore_errors=True)
