"""workbook.gate: a fault waits for checks in flight in other processes, and holds theirs back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbook import gate

@pytest.fixture(autouse=True)
def own_lock_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate opens its file once per process; each test here uses its own tmp_path."""
    monkeypatch.setattr(gate, "_fd", None)


CHILD = """
import sys, time
from pathlib import Path
from workbook import gate
gate.enter_check(Path(sys.argv[1]))
gate.exclusive(Path(sys.argv[1]))
print(time.time(), flush=True)
time.sleep(1.0)
gate.shared_again()
gate.exit_check()
"""


def test_fault_waits_for_a_check_in_flight_and_blocks_the_next(tmp_path: Path) -> None:
    gate.enter_check(tmp_path)            # a check of this process is running
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.8)
        released = time.time()
        gate.exit_check()                 # our check ends: the child's fault may start
        started = float(child.stdout.readline())
        assert started >= released, f"the fault started {released - started:.2f} s before our check ended"
        t0 = time.monotonic()
        gate.enter_check(tmp_path)        # our next check waits for the fault to end
        assert time.monotonic() - t0 >= 0.5, "a check ran during another process's fault"
        gate.exit_check()
    finally:
        child.wait(10)


PROBE = """
import sys, time
from pathlib import Path
from workbook import gate
t0 = time.monotonic()
gate.enter_check(Path(sys.argv[1]))
print(time.monotonic() - t0, flush=True)
gate.exit_check()
"""


def test_a_restart_inside_a_held_block_keeps_the_stack_held(tmp_path: Path) -> None:
    gate.enter_check(tmp_path)
    gate.exclusive(tmp_path)          # faults.alone
    gate.exclusive(tmp_path)          # faults.kill inside it
    gate.shared_again()               # faults.restart: the block still holds the stack
    probe = subprocess.Popen([sys.executable, "-c", PROBE, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.8)
        gate.shared_again()           # the block ends
        waited = float(probe.stdout.readline())
        assert waited >= 0.6, f"another process's check ran {waited:.2f} s into a held block"
    finally:
        gate.exit_check()
        probe.wait(10)
