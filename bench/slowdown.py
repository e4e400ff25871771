"""Run a command while services of the embedded stack run N times slower: do the latency checks
notice?

    python -m workbook.stack up
    python bench/slowdown.py --factor 5 --services backend,backend2 -- \
        python run_all.py --env local --only 03_agents.agent_performance_monitoring

Each named service's process is throttled to 1/factor of the CPU time it would get, by stopping
and continuing it (SIGSTOP/SIGCONT) on a short period, as a starved machine or a CPU quota
would: every request it serves takes about factor times longer. Only processes the embedded
stack records are touched, looked up again every period, so a service that a check kills and
restarts stays slow; the throttle ends when the command does (or after --max-s), and every
process is continued whatever happens. Prints the command's exit code and how long the
services were throttled; a budget that catches a `factor`x slowdown makes the command fail.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import psutil

from workbook.paths import project_root
from workbook.stack.manager import Stack

PERIOD_S = 0.05  # short enough that a request of tens of ms meets several stops


def processes(names: list[str]) -> dict[str, psutil.Process]:
    """The named services that run, with their processes as the stack records them now (a restart
    records a new one)."""
    state = Stack(project_root()).state()
    return {name: p for name in names if (svc := state.services.get(name)) is not None and (p := svc.process()) is not None}


def signal_all(procs: list[psutil.Process], stop_them: bool) -> None:
    for p in procs:
        try:
            p.suspend() if stop_them else p.resume()
        except psutil.NoSuchProcess:
            pass  # killed by a fault check: its successor is found on the next period


def throttle(names: list[str], factor: float, stop: threading.Event) -> None:
    running_s = PERIOD_S / factor
    suspended: list[psutil.Process] = []
    try:
        while not stop.is_set():
            signal_all(suspended, stop_them=False)
            time.sleep(running_s)
            # Looked up every period: a check that kills and restarts a service must not end the
            # slowdown for the rest of the command.
            suspended = list(processes(names).values())
            signal_all(suspended, stop_them=True)
            stop.wait(PERIOD_S - running_s)
    finally:
        signal_all(suspended, stop_them=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", type=float, default=5.0, help="how many times slower (default 5)")
    parser.add_argument("--services", default="backend,backend2", help="comma-separated stack services")
    parser.add_argument("--max-s", type=float, default=600.0, help="stop throttling after this, whatever the command does")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.factor <= 1:
        parser.error("give a factor over 1 and a command after --")
    names = [s.strip() for s in args.services.split(",") if s.strip()]
    missing = [name for name in names if name not in processes(names)]
    if missing:
        sys.exit(f"{', '.join(missing)} not running in the embedded stack: start it with `python -m workbook.stack up`")
    stop = threading.Event()
    worker = threading.Thread(target=throttle, args=(names, args.factor, stop), daemon=True)
    t0 = time.monotonic()
    worker.start()
    try:
        code = subprocess.run(command, timeout=args.max_s).returncode
    except subprocess.TimeoutExpired:
        code = -1
    finally:
        stop.set()
        worker.join()
    print(f"slowdown: {args.services} at 1/{args.factor:g} of their CPU for {time.monotonic() - t0:.1f} s; "
          f"the command exited {code}")
    sys.exit(code)


if __name__ == "__main__":
    main()
