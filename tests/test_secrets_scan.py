"""Secrets never reach an output, in any common encoding; one that does fails the run, named by
file and encoding, never by value."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests_support import checks_notebook, params_text, run
from workbook.results import RunResults
from workbook.runner.secrets_scan import REDACTED, scan, scrub_text, variants

SECRET = "very/secret+value=123&more!"


def encodings(s: str) -> dict[str, str]:
    """How a check might print a password, computed here (not by the code under test)."""
    dsn = f"postgresql://app:{quote(s, safe='')}@127.0.0.1:5432/db"
    return {
        "raw": s,
        "url": quote(s, safe=""),
        "url_plus": quote_plus(s),
        "base64": base64.b64encode(s.encode()).decode(),
        "basic_auth_base64url": base64.urlsafe_b64encode(b"Basic app:" + s.encode()).decode(),
        "dsn": dsn,
        "dsn_base64": base64.b64encode(dsn.encode()).decode(),
        "hex": s.encode().hex(),
        "json": json.dumps({"password": s}),
    }


PRINTS = (
    'with check("prints_secret"):\n'
    "    import base64, json\n"
    "    from urllib.parse import quote, quote_plus\n"
    '    s = wb.env.service("db").secret()\n'
    "    dsn = f\"postgresql://app:{quote(s, safe='')}@127.0.0.1:5432/db\"\n"
    "    for text in (s, quote(s, safe=''), quote_plus(s), base64.b64encode(s.encode()).decode(),\n"
    "                 base64.urlsafe_b64encode(b'Basic app:' + s.encode()).decode(), dsn,\n"
    "                 base64.b64encode(dsn.encode()).decode(), s.encode().hex(), json.dumps({'password': s})):\n"
    "        print(text)\n"
    "    assert False, f'could not connect to {dsn}'"
)


@pytest.fixture
def leaky_env(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WB_TEST_SECRET", SECRET)
    (project / "params" / "local.yaml").write_text(
        params_text(services={"db": {"url": "postgresql://app@127.0.0.1:1/x", "password_env": "WB_TEST_SECRET"}}))
    return project


def test_base64_fragments_are_found_at_every_offset_inside_longer_text() -> None:
    for prefix in ("", "a", "ab", "abc"):
        blob = base64.b64encode(f"{prefix}{SECRET}tail".encode()).decode()
        assert REDACTED in scrub_text(blob, [SECRET]), prefix
    assert [v.text for v in variants("short")] == ["short"]  # too short for encoded forms to mean anything


def test_a_secret_printed_in_many_encodings_reaches_no_output(leaky_env: Path) -> None:
    project = leaky_env
    checks_notebook(project / "notebooks" / "01_leaky.ipynb", PRINTS)
    assert run() == 1  # the check failed: its message held a DSN
    run_dir = (project / "outputs" / "latest").resolve()
    outputs = [p for p in run_dir.rglob("*") if p.is_file()] + [project / "outputs" / "history.jsonl"]
    assert {p.name for p in outputs} >= {"01_leaky.ipynb", "01_leaky.results.json", "results.json", "junit.xml",
                                         "report.html", "history.jsonl"}
    for path in outputs:
        data = path.read_bytes()
        for name, text in encodings(SECRET).items():
            assert text.encode() not in data, f"{name} encoding in {path.name}"
    executed = (run_dir / "01_leaky.ipynb").read_text()
    assert executed.count(REDACTED) >= len(encodings(SECRET)), "the outputs were printed, then redacted"
    results = RunResults.read(run_dir / "results.json")
    assert results.checks[0].message == f"AssertionError: could not connect to postgresql://app:{REDACTED}@127.0.0.1:5432/db"
    assert (results.secret_hits, results.secrets_checked) == ([], 1)
    assert json.loads((run_dir / "results.json").read_text())["secrets_found"] == 0
    page = (run_dir / "report.html").read_text()
    assert page.index("0 secrets found") < page.index('<h2 id="failures">')


def test_a_secret_left_in_any_file_of_the_run_fails_it_naming_file_and_encoding(
        leaky_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = leaky_env
    checks_notebook(project / "notebooks" / "01_dumps.ipynb",
                    'with check("writes_a_debug_file"):\n    import base64\n    from pathlib import Path\n'
                    '    s = wb.env.service("db").secret()\n'
                    '    Path(ledger_path).with_name("debug.txt").write_text(base64.b64encode(s.encode()).decode())')
    assert run() == 1  # every check passed: the secret alone fails the run
    out = capsys.readouterr().out
    assert "SECRET debug.txt: base64 encoding of services.db" in out
    assert "1 secrets found" in out and "FAILED" in out
    assert SECRET not in out and encodings(SECRET)["base64"] not in out
    run_dir = (project / "outputs" / "latest").resolve()
    results = RunResults.read(run_dir / "results.json")
    assert results.totals.failed == 0 and not results.green
    assert [(h.file, h.encoding, h.secret) for h in results.secret_hits] == [("debug.txt", "base64", "services.db")]
    assert json.loads((run_dir / "results.json").read_text())["secrets_found"] == 1
    page = (run_dir / "report.html").read_text()
    assert "1 secret(s) found" in page and "debug.txt: base64 (services.db)" in page and "FAILED" in page
    failure = ET.parse(run_dir / "junit.xml").getroot().find(".//testcase[@name='outputs_hold_no_secret']/failure")
    assert failure is not None and failure.text == "debug.txt: base64 (services.db)"
    assert SECRET not in (run_dir / "junit.xml").read_text()


def test_scan_names_a_dsn(tmp_path: Path) -> None:
    (tmp_path / "log.txt").write_text(encodings(SECRET)["dsn"])
    (tmp_path / "clean.txt").write_text("nothing here")
    count, hits = scan(tmp_path, sorted(tmp_path.iterdir()), {"services.db": SECRET})
    assert count == 2 and [(h.file, h.encoding) for h in hits] == [("log.txt", "dsn")]
