"""Run the workbook's notebooks headless against one environment, or read earlier runs.

    python run_all.py --env local                 # every notebook, embedded stack
    python run_all.py --env staging --only 01_auth
    python run_all.py --rerun-failed
    python run_all.py --repeat 5 --only 02_websocket   # find flaky checks
    python run_all.py --shard 1/2                 # half the notebooks, balanced on past durations
    python run_all.py --merge outputs/RUN_A outputs/RUN_B
    python run_all.py --history                   # flaky and slowing checks
    python run_all.py --compare local staging     # two runs side by side

Exit code: 0 every check passed, 1 something failed (or a secret reached an output, or the run
left something in a store, or --repeat/--compare found a difference), 2 usage or configuration
error (a params file pointed at a host outside its allowed_hosts among them).
"""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console

from workbook.paths import project_root
from workbook.runner.commands import merge_runs, show_compare, show_history
from workbook.runner.history import SLOWER_FACTOR
from workbook.runner.run import RunOptions, Runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", help="params/<env>.yaml to run against (default: local)")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="notebook, notebook.section or check id glob; repeat or comma-separate")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 2, metavar="N",
                        help="notebooks at once (default: number of cores)")
    parser.add_argument("--timeout", type=float, default=1800, metavar="SECONDS",
                        help="whole-notebook limit; a notebook past it is killed and marked failed")
    parser.add_argument("--rerun-failed", action="store_true",
                        help="run only what failed in outputs/latest")
    parser.add_argument("--keep-stack", action="store_true",
                        help="leave the embedded stacks this run started running afterwards")
    parser.add_argument("--shared-stack", action="store_true",
                        help="run every parallel notebook on the one embedded stack (default: a stack per "
                             "parallel slot, outputs/.stack, outputs/.stack-2, ...)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="run the selection K times (stack up once); list checks whose verdict differed")
    parser.add_argument("--shard", metavar="K/N",
                        help="run shard K of N: whole notebooks, balanced on earlier runs' durations")
    commands = parser.add_mutually_exclusive_group()
    commands.add_argument("--merge", nargs="+", metavar="RUN",
                          help="join shards' run directories into one run (results.json, junit.xml, report)")
    commands.add_argument("--history", action="store_true",
                          help="print the flaky and the slowing checks from outputs/history.jsonl")
    commands.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                          help="two runs side by side: a run directory, `latest`, or an env (its newest run)")
    parser.add_argument("--slower-factor", type=float, default=SLOWER_FACTOR, metavar="X",
                        help=f"--history: slower means past X times the median duration (default {SLOWER_FACTOR:g})")
    args = parser.parse_args(argv)
    if args.rerun_failed and args.only:
        parser.error("--rerun-failed and --only do not combine")
    reading = args.merge or args.history or args.compare
    if reading and (args.only or args.rerun_failed or args.shard or args.repeat != 1):
        parser.error("--merge, --history and --compare read earlier runs: they take no run options")
    outputs_dir = project_root() / "outputs"
    console = Console(soft_wrap=True)
    if args.history:
        return show_history(outputs_dir, args.env, console, factor=args.slower_factor)
    if args.compare:
        return show_compare(*args.compare, outputs_dir, console)
    if args.merge:
        return merge_runs(args.merge, outputs_dir, console)
    return Runner(RunOptions(env=args.env or "local", only=args.only, parallel=args.parallel, timeout_s=args.timeout,
                             rerun_failed=args.rerun_failed, keep_stack=args.keep_stack,
                             shared_stack=args.shared_stack, shard=args.shard or "",
                             repeat=args.repeat), console=console).run()


if __name__ == "__main__":
    sys.exit(main())
