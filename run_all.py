"""Run the workbook's notebooks headless against one environment.

    python run_all.py --env local                 # every notebook, embedded stack
    python run_all.py --env staging --only 01_auth
    python run_all.py --rerun-failed

Exit code: 0 every check passed, 1 something failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys

from workbook.runner.run import RunOptions, Runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="local", help="params/<env>.yaml to run against (default: local)")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="notebook, notebook.section or check id glob; repeat or comma-separate")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 2, metavar="N",
                        help="notebooks at once (default: number of cores)")
    parser.add_argument("--timeout", type=float, default=1800, metavar="SECONDS",
                        help="whole-notebook limit; a notebook past it is killed and marked failed")
    parser.add_argument("--rerun-failed", action="store_true",
                        help="run only what failed in outputs/latest")
    parser.add_argument("--keep-stack", action="store_true",
                        help="leave an embedded stack this run started running afterwards")
    args = parser.parse_args(argv)
    if args.rerun_failed and args.only:
        parser.error("--rerun-failed and --only do not combine")
    return Runner(RunOptions(env=args.env, only=args.only, parallel=args.parallel, timeout_s=args.timeout,
                             rerun_failed=args.rerun_failed, keep_stack=args.keep_stack)).run()


if __name__ == "__main__":
    sys.exit(main())
