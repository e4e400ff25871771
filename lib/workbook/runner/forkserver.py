"""A fork server for IPython kernels: a new kernel for the price of a fork.

Starting a kernel is mostly imports (python, ipykernel, IPython, then the notebooks' own
modules), about a second of CPU each time. The server, `python -m workbook.runner.forkserver`, does
those imports once, then forks a child per kernel, which only has to initialise `IPKernelApp`.
The server imports but starts nothing (no zmq context, thread or event loop), so a child
inherits no half-copied machinery.

It talks to its owner over two pipes of JSON lines: requests in; replies (in request order)
and its children's exit statuses out, since only the server can wait for its children. It
exits, killing the children left, when the request pipe ends: when its owner closes it or dies.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from typing import IO, Any

import psutil

log = logging.getLogger(__name__)

# ipykernel's parent poller exits with 1 once its parent, the server, is gone: the likeliest
# status of a kernel whose end the server did not live to report.
ORPHAN_STATUS = 1

# ipykernel's own imports, including those IPKernelApp.initialize() makes lazily (debugpy alone
# is half of what is left of a forked kernel's start).
KERNEL_IMPORTS = ("import ipykernel.kernelapp, ipykernel.ipkernel, ipykernel.debugger, IPython.core.completerlib,"
                  " tornado.platform.asyncio, pdb, faulthandler")


class ForkServerError(RuntimeError):
    pass


class ForkServer:
    """The owner's end of a fork server."""

    def __init__(self, proc: subprocess.Popen[bytes], requests: IO[bytes], replies: IO[bytes]) -> None:
        self.proc = proc
        self.lost = False
        self._requests = requests
        self._replies = replies
        self._cond = threading.Condition()
        self._closing = False
        # The server's first reply, once it has imported everything, is its own pid.
        self._ready: Future[int] = Future()
        self._pending: deque[Future[int]] = deque([self._ready])
        self._exits: dict[int, int] = {}
        self._reader = threading.Thread(target=self._read, name="forkserver-replies", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, preload: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> ForkServer:
        """Start a server that has run `preload` (imports) besides importing ipykernel."""
        if not hasattr(os, "fork"):
            raise ForkServerError("this platform cannot fork")
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            # Its own session, as kernels have: a Ctrl-C in the terminal is the owner's to handle.
            proc = subprocess.Popen([sys.executable, "-m", __name__, str(req_r), str(rep_w), preload],
                                    pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        except OSError as e:
            os.close(req_w)
            os.close(rep_r)
            raise ForkServerError(f"cannot run {sys.executable}: {e}") from e
        finally:
            os.close(req_r)
            os.close(rep_w)
        server = cls(proc, os.fdopen(req_w, "wb"), os.fdopen(rep_r, "rb"))
        try:
            server._ready.result(timeout)
        except (TimeoutError, ForkServerError) as e:
            server.close()
            raise ForkServerError(str(e) or f"not ready after {timeout:g}s") from e
        return server

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def spawn(self, args: list[str], cwd: str, env: Mapping[str, str]) -> ForkedKernel:
        """Fork a kernel that runs `IPKernelApp` with `args`, in `cwd`, with exactly `env`."""
        reply: Future[int] = Future()
        line = json.dumps({"args": args, "cwd": cwd, "env": dict(env)}).encode() + b"\n"
        with self._cond:
            if self.lost or self._closing:
                raise ForkServerError("the fork server has exited")
            self._pending.append(reply)
            try:
                self._requests.write(line)
                self._requests.flush()
            except BrokenPipeError:
                pass  # the server is gone: the reader fails `reply` at the end of the replies
        return ForkedKernel(self, await asyncio.wrap_future(reply))

    def exit_status(self, pid: int) -> int | None:
        with self._cond:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or self.lost, timeout)

    def close(self, timeout: float = 10) -> None:
        """End the server, which kills and reaps the kernels still running, then exits."""
        with self._cond:
            self._closing = True
            self._requests.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout)

    def _read(self) -> None:
        with self._replies:
            for line in self._replies:
                msg = json.loads(line)
                with self._cond:
                    if "exited" in msg:
                        self._exits[msg["exited"]] = msg["status"]
                        self._cond.notify_all()
                    else:
                        _settle(self._pending.popleft(), msg)
        with self._cond:
            self.lost = True
            while self._pending:
                _settle(self._pending.popleft(), {"error": "the fork server has exited"})
            self._cond.notify_all()
            unexpected = not self._closing and self._ready.done() and self._ready.exception() is None
        if unexpected:
            log.warning("the kernel fork server exited: kernels now start as new processes")


def _settle(reply: Future[int], msg: dict[str, Any]) -> None:
    # A spawn whose caller was cancelled has nobody to tell; the server kills that kernel at close.
    if reply.set_running_or_notify_cancel():
        if "pid" in msg:
            reply.set_result(msg["pid"])
        else:
            reply.set_exception(ForkServerError(msg["error"]))


class ForkedKernel:
    """What jupyter_client's LocalProvisioner uses of a Popen, for a kernel that is the fork
    server's child, not ours: its status comes from the server, its signals go through psutil,
    which refuses to signal a recycled pid."""

    stdin = stdout = stderr = None  # LocalProvisioner.wait() closes these when set

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._server = server
        try:
            self._proc: psutil.Process | None = psutil.Process(pid)
        except psutil.NoSuchProcess:  # already dead and reaped: the server reports its status
            self._proc = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.exit_status(self.pid)
            if self.returncode is None and self._server.lost and not self._running():
                self.returncode = ORPHAN_STATUS
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        limit = math.inf if timeout is None else timeout
        deadline = time.monotonic() + limit
        while (status := self.poll()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", limit)
            # Short waits: an orphan (the server died) has no exit report, only psutil to tell.
            self._server.wait_exit(self.pid, min(0.1, left))
        return status

    def send_signal(self, sig: int) -> None:
        if self.poll() is None and self._proc is not None:
            try:
                self._proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass  # ended meanwhile, which Popen.send_signal does not count as an error either

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _running(self) -> bool:
        try:
            return (self._proc is not None and self._proc.is_running()
                    and self._proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False


# --- the server process ------------------------------------------------------------------


def _send(fd: int, msg: dict[str, Any]) -> None:
    data = json.dumps(msg).encode() + b"\n"
    try:
        while data:
            data = data[os.write(fd, data):]
    except BrokenPipeError:
        pass  # the owner is gone; the end of the requests will stop the server


def _reap(children: set[int], replies: int, block: bool) -> None:
    while children:
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        children.discard(pid)
        _send(replies, {"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the kernel and whatever it started
    except ProcessLookupError:
        os.kill(pid, signal.SIGKILL)  # forked so recently it has not called setsid() yet


def _serve(requests: int, replies: int) -> dict[str, Any] | None:
    """Fork a child per request. Returns the request in that child; in the server, returns
    None once the requests end and every child has been killed and reaped."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD reaches the wakeup fd
    children: set[int] = set()
    partial = b""
    while True:
        readable, _, _ = select.select([requests, wake_r], [], [])
        if wake_r in readable:
            while True:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    break
            _reap(children, replies, block=False)
        if requests not in readable:
            continue
        chunk = os.read(requests, 1 << 16)
        if not chunk:
            for pid in children:
                _kill(pid)
            _reap(children, replies, block=True)
            return None
        *lines, partial = (partial + chunk).split(b"\n")
        for line in lines:
            request = json.loads(line)
            try:
                pid = os.fork()
            except OSError as e:
                _send(replies, {"error": f"fork failed: {e}"})
                continue
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for fd in (requests, replies, wake_r, wake_w):
                    os.close(fd)
                os.setsid()  # its own process group, as jupyter_client starts kernels: signals go to it
                return request
            children.add(pid)
            _send(replies, {"pid": pid})


def _run_kernel(request: dict[str, Any]) -> None:
    from ipykernel.kernelapp import IPKernelApp

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # What a kernel started by `python -m ipykernel_launcher` sees; IPython adds its cwd to sys.path.
    launcher = importlib.util.find_spec("ipykernel_launcher")  # installed with ipykernel
    assert launcher is not None and launcher.origin is not None
    sys.argv = [launcher.origin, *request["args"]]
    IPKernelApp.launch_instance(request["args"])


def main() -> None:
    requests, replies, preload = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if sys.path and sys.path[0] == os.getcwd():
        del sys.path[0]  # put there by `-m`; ipykernel_launcher removes it too
    # A normal kernel imports debugpy once ipykernel has captured its stderr, so nobody sees
    # debugpy's warning about frozen modules; here it would reach the terminal. Kernels get
    # their own environment.
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    try:
        exec(KERNEL_IMPORTS, {})
        exec(preload, {})
        if threading.active_count() > 1:
            raise RuntimeError("the preload started a thread, which forked kernels would inherit half-copied")
    except Exception as e:
        _send(replies, {"error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
    # The server prints nothing from here on: what the preload left buffered is printed now,
    # not again by every kernel.
    sys.stdout.flush()
    sys.stderr.flush()
    _send(replies, {"pid": os.getpid()})
    request = _serve(requests, replies)
    if request is not None:  # in a forked child: become the kernel, then exit as a kernel does
        _run_kernel(request)


if __name__ == "__main__":
    main()
