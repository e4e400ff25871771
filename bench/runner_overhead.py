"""Per-notebook overhead of run_all.py (kernel start + ledger + reports) beside pytest --nbmake.

    python bench/runner_overhead.py [--notebooks 10]

Makes N trivial notebooks (setup, one check, summary) in a throwaway project root with no
services, then times, as whole commands: run_all serially and in parallel, and
`pytest --nbmake` on the same notebooks serially and with xdist.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_notebook

REPO = Path(__file__).resolve().parents[1]


def make_root(root: Path, count: int) -> None:
    (root / "params").mkdir()
    # The repo's local params (every budget and expectation is required) without the stack.
    params = yaml.safe_load((REPO / "params" / "local.yaml").read_text())
    params.update({"stack": "none", "services": {}, "description": "no services (benchmark)"})
    (root / "params" / "local.yaml").write_text(yaml.safe_dump(params))
    (root / "notebooks").mkdir()
    for i in range(count):
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = new_code_cell('env = "local"\nrun_id = ""\nledger_path = ""')
        params.metadata["tags"] = ["parameters"]
        nb.cells = [
            params,
            new_code_cell(f'from workbook import setup, section, check, summary\n'
                          f'wb = setup("{i:02d}_trivial", env=env, run_id=run_id, ledger_path=ledger_path)\n'
                          f'section("basic")'),
            new_code_cell('with check("arithmetic"):\n    assert 1 + 1 == 2'),
            new_code_cell("await summary()"),
        ]
        nbformat.write(nb, root / "notebooks" / f"{i:02d}_trivial.ipynb")


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notebooks", type=int, default=10)
    args = parser.parse_args()
    n = args.notebooks
    cores = os.cpu_count() or 2
    with tempfile.TemporaryDirectory(prefix="wb-runner-bench-") as tmp:
        root = Path(tmp)
        make_root(root, n)
        env = {**os.environ, "WORKBOOK_ROOT": str(root)}
        py = sys.executable
        nbmake = [py, "-m", "pytest", "--nbmake", str(root / "notebooks"), "-q", "-p", "no:cacheprovider",
                  "-o", "addopts=", "--rootdir", str(root)]
        rows = [
            ("run_all --parallel 1", timed([py, str(REPO / "run_all.py"), "--parallel", "1"], env, REPO)),
            (f"run_all --parallel {cores}", timed([py, str(REPO / "run_all.py"), "--parallel", str(cores)], env, REPO)),
            ("pytest --nbmake (serial)", timed(nbmake, env, root)),
            (f"pytest --nbmake -n {cores}", timed([*nbmake, "-n", str(cores)], env, root)),
        ]
    print(f"{n} trivial notebooks, {cores} cores; whole-command wall time:")
    for label, secs in rows:
        print(f"  {label:<28} {secs:6.2f} s  ({secs / n:5.2f} s per notebook)")
    best_runner = min(rows[0][1], rows[1][1])
    print(f"run_all (best) / nbmake (serial): {best_runner / rows[2][1]:.2f}")


if __name__ == "__main__":
    main()
