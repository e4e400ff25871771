"""workbook.gate: a fault waits for checks in flight in other processes, and holds theirs back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from workbook import gate

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
