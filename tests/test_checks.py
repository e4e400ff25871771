from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from workbook import checks
from workbook.checks import ChecksFailed, check, require, section, skip, summary
from workbook.context import setup
from workbook.errors import WorkbookError
from workbook.results import NotebookLedger

from bare_assert import one_plus_one_is_three
from tests_support import params_text


@pytest.fixture
def ledger(project: Path) -> Path:
    path = project / "out" / "nb.results.json"
    setup("nb", env="local", run_id="r1", ledger_path=str(path))
    section("s")
    return path


def test_failure_is_recorded_and_the_notebook_goes_on(ledger: Path) -> None:
    with check("first"):
        one_plus_one_is_three()
    with check("second"):
        pass
    [first, second] = checks.results()
    assert (first.id, first.status) == ("nb.s.first", "failed")
    assert first.message == "AssertionError: assert 1 + 1 == 3"  # a bare assert names its own line
    assert "Traceback" in first.traceback
    assert second.status == "passed"
    on_disk = NotebookLedger.read(ledger)
    assert [c.status for c in on_disk.checks] == ["failed", "passed"]
    assert on_disk.run_id == "r1"


def test_skip_records_reason_and_never_counts_as_pass(ledger: Path) -> None:
    with check("later"):
        skip("server-only feature")
        raise AssertionError("not reached")
    [r] = checks.results()
    assert (r.status, r.message) == ("skipped", "server-only feature")
    asyncio.run(summary())  # skips alone do not fail the notebook


def test_cleanup_runs_on_failure_in_reverse_order(ledger: Path) -> None:
    done: list[str] = []
    with check("cleans") as ck:
        ck.defer(done.append, "first registered")
        ck.defer(done.append, "second registered")
        raise RuntimeError("boom")
    assert done == ["second registered", "first registered"]
    assert checks.results()[0].message == "RuntimeError: boom"


def test_async_cleanup_needs_async_with(ledger: Path) -> None:
    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    async def body() -> None:
        async with check("async_ok") as ck:
            ck.defer(close)
            await asyncio.sleep(0)

    asyncio.run(body())
    assert closed == [True] and checks.results()[0].status == "passed"
    with check("sync_with_async_cleanup") as ck:
        ck.defer(close)
    assert "use `async with check" in checks.results()[1].message


def test_failed_cleanup_fails_a_passing_check(ledger: Path) -> None:
    def broken() -> None:
        raise OSError("could not drop table")

    with check("leaky") as ck:
        ck.defer(broken)
    r = checks.results()[0]
    assert r.status == "failed" and "could not drop table" in r.message


def test_summary_lists_every_failure(ledger: Path) -> None:
    with check("a"):
        assert False, "a broke"
    with check("b"):
        pass
    with check("c"):
        raise ValueError("c broke")
    with pytest.raises(ChecksFailed) as e:
        asyncio.run(summary())
    text = str(e.value)
    assert "2 of 3 checks failed" in text
    assert "nb.s.a: AssertionError: a broke" in text and "nb.s.c: ValueError: c broke" in text
    assert "nb.s.b" not in text


def test_summary_without_checks_fails(ledger: Path) -> None:
    with pytest.raises(ChecksFailed, match="no check ran"):
        asyncio.run(summary())


def test_rerunning_a_cell_replaces_its_result(ledger: Path) -> None:
    with check("flaky"):
        assert False
    with check("flaky"):
        pass
    assert [(r.id, r.status) for r in checks.results()] == [("nb.s.flaky", "passed")]


def test_namespace_is_per_run_and_check(ledger: Path) -> None:
    with check("ns_one") as one:
        pass
    with check("ns_two") as two:
        pass
    assert one.ns != two.ns and "r1" in one.ns and one.ns.isidentifier() and len(one.ns) <= 63


def test_interrupts_are_not_swallowed(ledger: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with check("interrupted"):
            raise KeyboardInterrupt
    assert checks.results()[0].status == "failed"


def test_require_skips_where_env_refuses(project: Path) -> None:
    (project / "params" / "prod.yaml").write_text(params_text(production=True, destructive=False, load={"enabled": False, "max_concurrency": 1, "max_requests": 1, "max_duration_s": 1}))
    setup("nb", env="prod")
    section("s")
    with check("destroys"):
        require("destructive")
        raise AssertionError("must not run in production")
    r = checks.results()[0]
    assert r.status == "skipped" and "production" in r.message


def test_bad_ids_and_missing_section(project: Path) -> None:
    setup("nb", env="local")
    with pytest.raises(WorkbookError, match="before any section"):
        check("x")
    with pytest.raises(WorkbookError, match="lower_snake_case"):
        section("Bad Name")


def test_measurements_are_kept_whether_the_check_passes_or_not(ledger: Path) -> None:
    with check("fast") as ck:
        assert ck.measure("p95", 12.5, budget=100) <= 100
    with check("slow") as ck:
        assert ck.measure("p95", 250.0, budget=100) <= 100, "over budget"
    fast, slow = NotebookLedger.read(ledger).checks
    assert [(m.name, m.value, m.unit, m.budget) for m in fast.measurements] == [("p95", 12.5, "ms", 100)]
    assert slow.status == "failed" and slow.measurements[0].value == 250.0


def test_a_shared_fixture_is_made_once_and_removed_by_summary(project: Path) -> None:
    made, removed = [], []

    async def make(scope) -> str:
        made.append(scope.ns)
        scope.defer(removed.append, scope.ns)
        return scope.ns

    async def notebook() -> tuple[str, str]:
        wb = setup("nb", env="local", run_id="r9")
        section("s")
        with check("first"):
            first = await wb.shared("reader", make)
        with check("second"):
            second = await wb.shared("reader", make)
        assert removed == []          # alive until the notebook ends
        await summary()
        return first, second

    first, second = asyncio.run(notebook())
    assert first == second == "wb_r9_nb_reader" and made == [first] and removed == [first]


def test_a_failed_fixture_removal_fails_the_notebook(project: Path) -> None:
    async def make(scope) -> None:
        scope.defer(lambda: 1 / 0)

    async def notebook() -> None:
        wb = setup("nb", env="local", run_id="r9")
        section("s")
        with check("uses_it"):
            await wb.shared("broken", make)
        await summary()

    with pytest.raises(ChecksFailed, match="removing shared fixtures failed: <lambda>: ZeroDivisionError"):
        asyncio.run(notebook())


def test_a_fixture_that_failed_is_not_made_again_and_later_checks_name_the_cause(project: Path) -> None:
    tries = []
    path = project / "ledger.json"

    async def make(scope) -> None:
        tries.append(scope.ns)
        raise TimeoutError("BACKUP took longer than 30 s")

    async def notebook() -> None:
        wb = setup("nb", env="local", run_id="r9", ledger_path=str(path))
        section("s")
        for name in ("first", "second"):
            async with check(name):
                await wb.shared("backup", make)

    asyncio.run(notebook())
    first, second = NotebookLedger.read(path).checks
    assert tries == ["wb_r9_nb_backup"]
    assert "TimeoutError: BACKUP took longer than 30 s" in first.message
    assert "'backup' could not be made earlier: TimeoutError: BACKUP took longer" in second.message


def test_a_fixture_that_skipped_skips_the_later_checks_too(project: Path) -> None:
    path = project / "ledger.json"

    async def make(scope) -> None:
        skip("env has no test mailbox")

    async def notebook() -> None:
        wb = setup("nb", env="local", run_id="r9", ledger_path=str(path))
        section("s")
        for name in ("first", "second"):
            async with check(name):
                await wb.shared("mailbox", make)

    asyncio.run(notebook())
    assert [(c.status, c.message) for c in NotebookLedger.read(path).checks] == \
        [("skipped", "env has no test mailbox")] * 2
