"""Processes a notebook starts for the length of a check (a second service instance, a Locust
run) end with the notebook's kernel, also when the kernel is killed and no cleanup runs.

They run in sessions of their own (`start_new_session`), so a kernel's death does not reach them
through its process group; instead each asks the Linux kernel for SIGKILL when its parent dies
(`prctl(PR_SET_PDEATHSIG)`). Left running, a second auth with another issuer answered for the
stack's port range, and a stack brought up next to it failed with "wrong issuer".
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` of a child that must not outlive this process (Linux; elsewhere nothing).
    The signal follows the thread that forks, so the child must be started from a thread that
    lives as long as the process (the notebook's event loop thread), never from a worker thread."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
