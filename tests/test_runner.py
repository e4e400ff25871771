"""run_all's runner on throwaway notebooks: exit codes, selection, timeouts, partial results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import psutil
import pytest

from tests_support import params_text, checks_notebook, run
from workbook.results import RunResults


def latest(project: Path) -> RunResults:
    return RunResults.read(project / "outputs" / "latest" / "results.json")


def test_all_pass_exit_0_and_reports(project: Path) -> None:
    checks_notebook(project / "notebooks" / "01_a.ipynb", 'with check("one"):\n    assert True')
    checks_notebook(project / "notebooks" / "02_b.ipynb", 'with check("two"):\n    assert True')
    assert run() == 0
    res = latest(project)
    assert [c.id for c in res.checks] == ["01_a.basic.one", "02_b.basic.two"]
    run_dir = (project / "outputs" / "latest").resolve()
    for name in ("results.json", "junit.xml", "report.html", "01_a.ipynb", "01_a.results.json"):
        assert (run_dir / name).is_file(), name
    executed = nbformat.read(run_dir / "01_a.ipynb", as_version=4)
    assert executed.metadata["workbook"]["checks"][0]["status"] == "passed"
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    history = (project / "outputs" / "history.jsonl").read_text().splitlines()
    assert len(history) == 1 and json.loads(history[0])["passed"] == 2


def test_a_failed_check_exits_1_and_the_rest_still_runs(project: Path) -> None:
    checks_notebook(project / "notebooks" / "01_a.ipynb",
                    'with check("bad"):\n    assert 2 + 2 == 5, "arithmetic broke"',
                    'with check("good_after_bad"):\n    assert True')
    checks_notebook(project / "notebooks" / "02_b.ipynb", 'with check("fine"):\n    assert True')
    assert run() == 1
    res = latest(project)
    status = {c.id: (c.status, c.message) for c in res.checks}
    assert status["01_a.basic.bad"] == ("failed", "AssertionError: arithmetic broke")
    assert status["01_a.basic.good_after_bad"][0] == "passed"
    assert status["02_b.basic.fine"][0] == "passed"
    nbs = {n.name: n.status for n in res.notebooks}
    assert nbs == {"01_a": "failed", "02_b": "passed"}


def test_a_notebook_that_records_no_check_is_not_a_pass(project: Path) -> None:
    path = checks_notebook(project / "notebooks" / "01_a.ipynb", 'with check("one"):\n    assert True')
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].metadata["tags"] = []  # papermill cannot inject the ledger path: the kernel records elsewhere
    nbformat.write(nb, path)
    assert run() == 1
    (result,) = latest(project).notebooks
    assert result.status == "error" and "tagged 'parameters'" in result.error, result


def test_usage_and_config_errors_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checks_notebook(project / "notebooks" / "01_a.ipynb", 'with check("one"):\n    assert True')
    assert run(env="nope") == 2
    assert "unknown env 'nope'" in capsys.readouterr().out
    assert run(only=["99_missing"]) == 2
    assert "no notebook or check matches" in capsys.readouterr().out
    assert run(rerun_failed=True) == 2  # no previous run


def test_only_runs_just_the_selected_check(project: Path) -> None:
    checks_notebook(project / "notebooks" / "01_a.ipynb",
                    'with check("wanted"):\n    assert True',
                    'with check("unwanted"):\n    raise SystemExit("must not run")')
    checks_notebook(project / "notebooks" / "02_b.ipynb", 'with check("other"):\n    assert False')
    assert run(only=["01_a.basic.wanted"]) == 0
    assert [c.id for c in latest(project).checks] == ["01_a.basic.wanted"]
    assert run(only=["*.basic.other"]) == 1
    assert [c.id for c in latest(project).checks] == ["02_b.basic.other"]


def test_rerun_failed_runs_only_what_failed(project: Path) -> None:
    flag = project / "fixed"
    checks_notebook(project / "notebooks" / "01_a.ipynb",
                    'with check("stable"):\n    assert True',
                    f'with check("flaky"):\n    import os\n    assert os.path.exists({str(flag)!r}), "not fixed yet"')
    checks_notebook(project / "notebooks" / "02_b.ipynb", 'with check("fine"):\n    assert True')
    assert run() == 1
    flag.touch()
    assert run(rerun_failed=True) == 0
    assert [c.id for c in latest(project).checks] == ["01_a.basic.flaky"]
    assert run(rerun_failed=True) == 0  # nothing failed last time: nothing to do


def test_timeout_kills_the_notebook_keeps_partial_results(project: Path) -> None:
    checks_notebook(project / "notebooks" / "01_slow.ipynb",
                    'with check("before_hang"):\n    assert True',
                    'import time\ntime.sleep(120)',
                    'with check("never_reached"):\n    assert True')
    checks_notebook(project / "notebooks" / "02_fine.ipynb", 'with check("fine"):\n    assert True')
    assert run(timeout_s=6) == 1
    res = latest(project)
    slow = next(n for n in res.notebooks if n.name == "01_slow")
    assert slow.status == "timeout" and "1 recorded check" in slow.error
    assert [c.id for c in res.checks] == ["01_slow.basic.before_hang", "02_fine.basic.fine"]
    assert slow.duration_s < 30
    assert next(n for n in res.notebooks if n.name == "02_fine").status == "passed"
    # The output notebook is written at the end whatever happened, not only every few seconds.
    executed = nbformat.read(project / "outputs" / "latest" / "01_slow.ipynb", as_version=4)
    count = {c.source.splitlines()[0]: c.execution_count for c in executed.cells if c.cell_type == "code" and c.source}
    assert count['with check("before_hang"):'] and count["import time"], count
    assert count['with check("never_reached"):'] is None, count


def test_a_dead_kernel_fails_its_notebook_only(project: Path) -> None:
    checks_notebook(project / "notebooks" / "01_dies.ipynb",
                    'with check("before_crash"):\n    assert True',
                    'import os\nos._exit(1)')
    checks_notebook(project / "notebooks" / "02_fine.ipynb", 'with check("fine"):\n    assert True')
    assert run() == 1
    res = latest(project)
    dies = next(n for n in res.notebooks if n.name == "01_dies")
    assert dies.status == "error" and "Dead" in dies.error
    assert {c.id for c in res.checks} == {"01_dies.basic.before_crash", "02_fine.basic.fine"}


def test_many_notebooks_in_parallel_do_not_collide(project: Path) -> None:
    for i in range(12):
        checks_notebook(project / "notebooks" / f"{i:02d}_n.ipynb",
                        f'with check("pid"):\n    import os\n    print(os.getpid())\n    assert {i} == {i}')
    me = psutil.Process()
    assert run(parallel=12) == 0
    assert len(latest(project).checks) == 12
    kernels = [p for p in me.children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
    assert kernels == [], "kernels left running after the run"


def test_secrets_never_reach_outputs(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WB_TEST_SECRET", "very-secret-value-123")
    (project / "params" / "local.yaml").write_text(
        params_text(services={"db": {"url": "postgresql://u@127.0.0.1:1/x", "password_env": "WB_TEST_SECRET"}}))
    checks_notebook(project / "notebooks" / "01_leaky.ipynb",
                    'with check("prints_secret"):\n    print(wb.env.service("db").secret())\n'
                    '    assert False, wb.env.service("db").secret()')
    assert run() == 1
    run_dir = (project / "outputs" / "latest").resolve()
    for path in run_dir.iterdir():
        assert "very-secret-value-123" not in path.read_text(errors="replace"), path.name
    assert "[redacted]" in (run_dir / "01_leaky.ipynb").read_text()


def test_a_partly_running_stack_is_healed_and_left_running(project: Path) -> None:
    from workbook.stack.manager import Stack

    (project / "params" / "local.yaml").write_text(params_text(stack="embedded"))
    checks_notebook(project / "notebooks" / "01_a.ipynb", 'with check("one"):\n    assert wb.env.service("redis").url')
    stack = Stack(root=project)
    stack.up()
    try:
        stack.kill("redis")
        assert run() == 0
        assert all(r.running for r in stack.status()), "the run stopped a stack it did not start"
    finally:
        stack.down()
    assert not processes_under(project), "a stack process outlived down()"


def processes_under(root: Path) -> list[psutil.Process]:
    """Processes whose working directory or environment points into `root`."""
    found = []
    for p in psutil.process_iter(["cwd", "environ"]):
        places = [p.info["cwd"] or "", *(p.info["environ"] or {}).values()]
        if p.pid != os.getpid() and any(v.startswith(str(root)) for v in places):
            found.append(p)
    return found
