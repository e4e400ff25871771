"""How many concurrent WebSocket connections the two backend instances hold (goal: 5,000 in all,
2,500 per process), and the broadcast fan-out p99 to 1,000 of them.

    python bench/ws_capacity.py [--sizes 1000,5000] [--rounds 3]

The measuring is `ws_fanout.py`'s (its own stack in a throwaway root, users as the per-user limit
needs, sockets alternating between the instances, admin broadcasts timed from just before the
POST to each receipt); this adds what holding them costs each backend process: peak resident
memory and open file descriptors, sampled every 0.2 s while the sizes run. A size where `opened`
falls short of N, or delivered/sent below 100%, is past what the instances hold on this machine.
The workbook's asyncio client holds every socket in this one process (a gevent Locust user per
socket would cost more than the sockets).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time

import psutil

from own_stack import own_stack, services_for
from ws_fanout import INSTANCES, log_summary, raise_nofile, run
from workbook.stack.manager import Stack


def sample_peaks(stack: Stack, stop: threading.Event) -> dict[str, tuple[float, int]]:
    """Peak RSS (MiB) and open fds of each backend process until `stop` is set."""
    procs = {name: stack.state().services[name].process() for name in INSTANCES}
    peaks = {name: (0.0, 0) for name in INSTANCES}
    while not stop.wait(0.2):
        for name, p in procs.items():
            if p is None:
                continue
            try:
                rss, fds = p.memory_info().rss / 2**20, p.num_fds()
            except psutil.Error:
                continue
            peaks[name] = (max(peaks[name][0], rss), max(peaks[name][1], fds))
    return peaks


def measure(stack: Stack, sizes: list[int], rounds: int) -> None:
    stop, out = threading.Event(), dict[str, tuple[float, int]]()
    sampler = threading.Thread(target=lambda: out.update(sample_peaks(stack, stop)))
    sampler.start()
    try:
        asyncio.run(run(stack, sizes, rounds))
    finally:
        stop.set()
        sampler.join()
    print(f"\nper backend process while the sizes ran (largest {max(sizes)} sockets, half on each):")
    for name, (rss, fds) in out.items():
        print(f"  {name}: peak RSS {rss:.0f} MiB, peak open fds {fds}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    began = time.perf_counter()
    print(raise_nofile(max(sizes)))
    with own_stack("wb-ws-capacity-", services_for(list(INSTANCES))) as stack:
        print(f"{os.cpu_count()} cores")
        measure(stack, sizes, args.rounds)
        print("backend logs:", *log_summary(stack), sep="\n")
    print(f"total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
