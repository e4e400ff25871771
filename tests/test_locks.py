"""workbook.stack.locks: a fault waits for the checks in flight that use what it breaks, holds
back the ones that would use it, and lets every other check go on."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workbook.errors import WorkbookError
from workbook.stack.locks import ServiceLocks

# redis <- auth <- backend; clickhouse <- backend; oidc alone
GRAPH = {"redis": (), "clickhouse": (), "oidc": (), "auth": ("redis",), "backend": ("auth", "clickhouse")}

CHILD = """
import sys, time
from pathlib import Path
from workbook.stack.locks import ServiceLocks
locks = ServiceLocks(Path(sys.argv[1]), {graph!r})
{body}
"""


def child(directory: Path, body: str) -> subprocess.Popen[str]:
    code = CHILD.format(graph=GRAPH, body=body)
    return subprocess.Popen([sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True)


def test_a_fault_breaks_what_depends_on_it() -> None:
    locks = ServiceLocks(Path("/nonexistent"), GRAPH)
    assert locks.breaks(["redis"]) == {"redis", "auth", "backend"}
    assert locks.breaks(["clickhouse"]) == {"clickhouse", "backend"}
    assert locks.breaks(["oidc"]) == {"oidc"}


def test_fault_waits_for_a_check_using_its_service_and_holds_back_the_next(tmp_path: Path) -> None:
    locks = ServiceLocks(tmp_path, GRAPH)
    locks.begin()
    locks.use("backend")                       # a check of this process uses the backend
    fault = child(tmp_path, "locks.exclusive(['redis']); print(time.time(), flush=True); time.sleep(1.0); locks.end()")
    try:
        time.sleep(0.8)
        released = time.time()
        locks.end()                            # our check ends: the fault may start
        started = float(fault.stdout.readline())
        assert started >= released, f"the fault started {released - started:.2f} s before our check ended"
        t0 = time.monotonic()
        locks.begin()
        locks.use("auth")                      # our next check waits for the fault to end
        assert time.monotonic() - t0 >= 0.5, "a check used auth while another process had Redis down"
        locks.end()
    finally:
        fault.wait(10)


def test_checks_that_use_none_of_it_go_on(tmp_path: Path) -> None:
    fault = child(tmp_path, "locks.exclusive(['clickhouse']); print('held', flush=True); time.sleep(2.0); locks.end()")
    try:
        assert fault.stdout.readline().strip() == "held"
        locks = ServiceLocks(tmp_path, GRAPH)
        t0 = time.monotonic()
        locks.begin()
        locks.use("auth")
        locks.use("oidc")
        assert time.monotonic() - t0 < 0.5, "a ClickHouse fault held back a check of auth and oidc"
        assert locks.would_wait("backend"), "the backend depends on ClickHouse: it must wait"
        locks.end()
    finally:
        fault.wait(10)


def test_a_restart_inside_a_held_block_keeps_the_services_held(tmp_path: Path) -> None:
    locks = ServiceLocks(tmp_path, GRAPH)
    locks.begin()
    locks.exclusive(["auth"])                  # faults.alone(env, "auth")
    locks.exclusive(["auth"])                  # faults.kill(env, "auth") inside it
    locks.shared_again()                       # faults.restart: the block still holds auth
    probe = child(tmp_path, "locks.begin(); locks.use('backend'); print(time.time(), flush=True); locks.end()")
    try:
        time.sleep(0.8)
        released = time.time()
        locks.shared_again()                   # the block ends
        used = float(probe.stdout.readline())
        assert used >= released, f"another process used the backend {released - used:.2f} s before the block ended"
    finally:
        locks.end()
        probe.wait(10)


def test_two_faults_and_two_checks_never_deadlock(tmp_path: Path) -> None:
    """Each process uses one service, then faults another one the other process uses."""
    a = child(tmp_path, "locks.begin(); locks.use('oidc'); time.sleep(0.3); locks.exclusive(['clickhouse']); "
                        "time.sleep(0.3); locks.end(); print('a done', flush=True)")
    b = child(tmp_path, "locks.begin(); locks.use('backend'); time.sleep(0.3); locks.exclusive(['oidc']); "
                        "time.sleep(0.3); locks.end(); print('b done', flush=True)")
    outs = [p.communicate(timeout=20)[0].strip() for p in (a, b)]
    assert outs == ["a done", "b done"]


def test_checks_of_one_serial_name_run_one_at_a_time(tmp_path: Path) -> None:
    other = child(tmp_path, "locks.begin(); locks.serial('model_failures'); print('held', flush=True); "
                            "time.sleep(1.0); locks.end()")
    try:
        assert other.stdout.readline().strip() == "held"
        locks = ServiceLocks(tmp_path, GRAPH)
        t0 = time.monotonic()
        locks.begin()
        locks.serial("other_count")            # another name: no wait
        assert time.monotonic() - t0 < 0.3
        locks.end()
        locks.begin()
        locks.serial("model_failures")
        assert time.monotonic() - t0 >= 0.7, "two checks of one serial name ran at once"
        assert locks.waited() >= 0.5           # reported as time behind other notebooks
        with pytest.raises(WorkbookError, match="makes no fault"):
            locks.exclusive(["redis"])
        locks.end()
    finally:
        other.wait(10)


def test_waits_side_by_side_count_once(tmp_path: Path) -> None:
    fault = child(tmp_path, "locks.exclusive(['clickhouse']); print('held', flush=True); time.sleep(1.0); locks.end()")
    try:
        assert fault.stdout.readline().strip() == "held"
        locks = ServiceLocks(tmp_path, GRAPH)
        assert locks.would_wait("clickhouse")
        # A check's requests sent at once each wait for the service in a thread of their own.
        waiters = [threading.Thread(target=locks.use, args=("clickhouse",)) for _ in range(3)]
        for w in waiters:
            w.start()
        for w in waiters:
            w.join(10)
        assert 0.5 <= locks.waited() < 1.5, "three overlapping waits counted three times"
        locks.end()
    finally:
        fault.wait(10)


def test_outside_a_check_a_request_waits_for_the_fault_and_holds_nothing(tmp_path: Path) -> None:
    fault = child(tmp_path, "locks.exclusive(['auth']); print('held', flush=True); time.sleep(1.0); locks.end(); "
                            "locks.exclusive(['auth']); print('again', flush=True); locks.end()")
    try:
        assert fault.stdout.readline().strip() == "held"
        locks = ServiceLocks(tmp_path, GRAPH)
        t0 = time.monotonic()
        locks.wait_free("auth")                 # a setup cell's request while another notebook has auth down
        assert time.monotonic() - t0 >= 0.5, "a setup request went to auth while another process had it down"
        assert fault.stdout.readline().strip() == "again", "waiting outside a check kept the service held"
    finally:
        fault.wait(10)


def test_a_quiet_check_waits_for_checks_on_every_stack_and_holds_back_new_ones(tmp_path: Path) -> None:
    machine = tmp_path / "machine"
    # A check on another stack (its own lock directory, the same machine lock) is in flight.
    other = ServiceLocks(tmp_path / "stack-2", GRAPH, machine_dir=machine)
    other.machine()
    other.begin()
    quiet = child(tmp_path / "stack-1", f"""
locks.machine_dir = Path({str(machine)!r})
locks.machine(quiet=True); print(time.time(), flush=True); time.sleep(1.0); locks.end()""")
    try:
        time.sleep(0.8)
        released = time.time()
        other.end()
        started = float(quiet.stdout.readline())
        assert started >= released, f"the quiet check started {released - started:.2f} s before the other ended"
        t0 = time.monotonic()
        other.machine()                        # the next check, on either stack, waits for it
        assert time.monotonic() - t0 >= 0.5, "a check ran beside a quiet one"
        other.end()
    finally:
        quiet.wait(10)
