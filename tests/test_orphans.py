"""A process a check starts ends with the kernel that started it, even when the kernel is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

PARENT = """
import subprocess, sys, time
from workbook.orphans import die_with_parent
child = subprocess.Popen(["sleep", "60"], start_new_session=True, preexec_fn={preexec})
print(child.pid, flush=True)
time.sleep(60)
"""


def child_after_parent_killed(preexec: str) -> bool:
    """Whether the parent's child still runs 2 s after the parent got SIGKILL."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(preexec=preexec)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                return False
            time.sleep(0.05)
        return True
    finally:
        if psutil.pid_exists(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_child_ends_with_its_killed_parent() -> None:
    assert not child_after_parent_killed("die_with_parent"), "the child outlived its killed parent"


def test_without_it_the_child_outlives_the_parent() -> None:
    assert child_after_parent_killed("None"), "the test could not tell: a plain child ended too"
