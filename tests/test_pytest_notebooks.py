"""`pytest --nbmake` on workbook notebooks: one result per check, `-k` by check id, each notebook
executed once (also under xdist), failures outside checks reported, other notebooks left to nbmake."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests_support import checks_notebook, params_text, write_notebook


def pytest_in(project: Path, *args: str, env_vars: dict[str, str] | None = None) -> tuple[int, str, dict[str, ET.Element]]:
    """Run pytest as CI does, in `project`; (exit code, output, junit testcases by name)."""
    junit = project / "junit.xml"
    env = {**os.environ, "WORKBOOK_ROOT": str(project), **(env_vars or {})}
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbmake", "notebooks", "-p", "no:cacheprovider",
                           "-ra", f"--junitxml={junit}", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)
    cases = {c.get("name", ""): c for c in ET.parse(junit).iter("testcase")} if junit.exists() else {}
    return done.returncode, done.stdout + done.stderr, cases


def marked(project: Path, name: str) -> str:
    """A cell that records, in project/state/runs, that notebook `name` was executed."""
    return (f'from pathlib import Path\nPath({str(project / "state")!r}).mkdir(exist_ok=True)\n'
            f'with open({str(project / "state" / "runs")!r}, "a") as f:\n    f.write("{name}\\n")')


def runs(project: Path) -> list[str]:
    path = project / "state" / "runs"
    return sorted(path.read_text().split()) if path.exists() else []


def test_each_check_is_its_own_result(project: Path) -> None:
    nbs = project / "notebooks"
    checks_notebook(nbs / "01_a.ipynb", marked(project, "01_a"),
                    'with check("passes"):\n    assert True',
                    'with check("fails"):\n    assert 1 + 1 == 3, "arithmetic broke"',
                    'with check("skips"):\n    skip("no tool server here")')
    checks_notebook(nbs / "02_setup_error.ipynb", "raise RuntimeError('setup went wrong')",
                    'with check("never_runs"):\n    assert True')
    checks_notebook(nbs / "03_dies.ipynb", 'with check("before_death"):\n    assert True',
                    "import os\nos._exit(1)", 'with check("after_death"):\n    assert True')
    write_notebook(nbs / "04_plain.ipynb", "x = 1 + 1", "assert x == 2")  # not a workbook notebook

    code, out, cases = pytest_in(project)
    assert code == 1, out
    assert runs(project) == ["01_a"], "the notebook ran once, by this plugin only"
    assert set(cases) == {"01_a.basic.passes", "01_a.basic.fails", "01_a.basic.skips", "01_a.notebook",
                          "02_setup_error.basic.never_runs", "02_setup_error.notebook",
                          "03_dies.basic.before_death", "03_dies.basic.after_death", "03_dies.notebook",
                          "04_plain.ipynb"}, out
    assert list(cases["01_a.basic.passes"].iter("failure")) == []
    failure = cases["01_a.basic.fails"].find("failure")
    assert failure is not None and failure.get("message") == "AssertionError: arithmetic broke"
    assert "assert 1 + 1 == 3" in (failure.text or "")
    skipped = cases["01_a.basic.skips"].find("skipped")
    assert skipped is not None and skipped.get("message") == "no tool server here"
    assert cases["01_a.notebook"].find("failure") is None  # its failure is told by the failed check

    never = cases["02_setup_error.basic.never_runs"].find("failure")
    assert never is not None and "not recorded" in (never.get("message") or "")
    setup_failure = cases["02_setup_error.notebook"].find("failure")
    assert setup_failure is not None and "RuntimeError: setup went wrong" in (setup_failure.get("message") or "")

    assert cases["03_dies.basic.before_death"].find("failure") is None
    assert "Kernel died" in (cases["03_dies.basic.after_death"].find("failure").get("message") or "")  # type: ignore[union-attr]
    assert cases["03_dies.notebook"].find("failure") is not None
    assert cases["04_plain.ipynb"].find("failure") is None  # nbmake ran it, as before
    assert "FAILED notebooks/01_a.ipynb::01_a.basic.fails - AssertionError: arithmetic broke" in out
    assert "SKIPPED [1] notebooks/01_a.ipynb:1: no tool server here" in out


def test_k_selects_checks_by_id_and_deselected_checks_never_run(project: Path) -> None:
    flag = project / "state" / "deselected_ran"
    checks_notebook(project / "notebooks" / "01_a.ipynb", marked(project, "01_a"),
                    'with check("chosen"):\n    assert True',
                    f'with check("other"):\n    open({str(flag)!r}, "w").write("ran")\n    assert False')
    checks_notebook(project / "notebooks" / "02_b.ipynb", marked(project, "02_b"), 'with check("fine"):\n    assert True')
    code, out, cases = pytest_in(project, "-k", "01_a.basic.chosen")
    assert code == 0, out
    assert set(cases) == {"01_a.basic.chosen"}
    assert not flag.exists(), "a deselected check ran"
    assert runs(project) == ["01_a"], "a notebook with nothing selected must not run"


def test_under_xdist_each_notebook_runs_once_on_one_worker(project: Path) -> None:
    for name in ("01_a", "02_b", "03_c"):
        checks_notebook(project / "notebooks" / f"{name}.ipynb", marked(project, name),
                        'with check("one"):\n    assert True', 'with check("two"):\n    assert True',
                        'with check("three"):\n    assert True')
    code, out, cases = pytest_in(project, "-n", "2")
    assert code == 0, out
    assert runs(project) == ["01_a", "02_b", "03_c"], out
    assert len(cases) == 12 and "12 passed" in out


def test_a_notebook_directory_never_collects_nothing(project: Path) -> None:
    checks_notebook(project / "notebooks" / "01_new.ipynb", marked(project, "01_new"))  # no check cell yet
    code, out, cases = pytest_in(project)
    assert code == 1, out  # summary() fails a notebook where no check ran: reported, not exit 5
    assert set(cases) == {"01_new.notebook"}
    assert "no check ran" in (cases["01_new.notebook"].find("failure").get("message") or "")  # type: ignore[union-attr]


def test_a_secret_left_by_a_notebook_fails_the_session(project: Path) -> None:
    secret = "pytest/secret+value=42!"
    (project / "params" / "local.yaml").write_text(
        params_text(services={"db": {"url": "postgresql://app@127.0.0.1:1/x", "password_env": "WB_TEST_SECRET"}}))
    checks_notebook(project / "notebooks" / "01_dumps.ipynb",
                    'with check("prints_it"):\n    print(wb.env.service("db").secret())',
                    'with check("writes_it"):\n    import base64\n    from pathlib import Path\n'
                    '    s = wb.env.service("db").secret()\n'
                    '    Path(ledger_path).with_name("debug.txt").write_text(base64.b64encode(s.encode()).decode())')
    code, out, cases = pytest_in(project, "-n", "2", env_vars={"WB_TEST_SECRET": secret})
    assert code == 1, out  # every check passed: the file left behind fails the session
    assert all(c.find("failure") is None for c in cases.values())
    assert "secret scan: 1 secrets found" in out and "debug.txt: base64 encoding of services.db" in out
    assert secret not in out
    executed = next((project / "outputs" / "pytest").glob("*/01_dumps.ipynb")).read_text()
    assert secret not in executed and "[redacted]" in executed
