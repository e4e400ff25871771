"""How long `stack up` takes: cold (new data dirs), cold restart (data kept), warm (reuse).

    python bench/stack_startup.py [--rounds 3]

Runs in a throwaway project root, so the stack you may have running is not touched.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from workbook.stack.manager import Stack


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fresh, restart, warm = [], [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="wb-bench-") as root:
            stack = Stack(root=Path(root))
            try:
                fresh.append(timed(stack.up))
                warm.append(timed(stack.up))
                stack.down()
                restart.append(timed(stack.up))
            finally:
                stack.down()
    print(f"stack up over {args.rounds} rounds (seconds, median / min / max):")
    for label, xs in (("cold, new data dirs (initdb)", fresh), ("cold, existing data", restart),
                      ("warm, reuse running stack", warm)):
        print(f"  {label:<30} {statistics.median(xs):6.2f} {min(xs):6.2f} {max(xs):6.2f}")


if __name__ == "__main__":
    main()
