"""The data that crosses process boundaries: one check's record, one notebook's, one run's.

A kernel writes `NotebookLedger` JSON after every check; the runner reads those files,
adds what only it knows (timeouts, crashed kernels) and writes one `RunResults`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

CheckStatus = Literal["passed", "failed", "skipped"]
NotebookStatus = Literal["passed", "failed", "timeout", "error"]


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Measurement(BaseModel):
    """A figure a check measured (a latency percentile, a rate), kept even when the check passes,
    so trends and environments can be compared."""

    name: str
    value: float
    unit: str = "ms"
    budget: float | None = None  # the limit the check held it to, if any


class CheckResult(BaseModel):
    id: str  # <notebook>.<section>.<check>
    notebook: str
    section: str
    check: str
    status: CheckStatus
    duration_s: float
    message: str = ""
    traceback: str = ""
    started_at: str = Field(default_factory=utcnow)
    # Of duration_s: seconds blocked while another notebook's fault held a service this check uses.
    waited_s: float = 0.0
    measurements: list[Measurement] = []


class NotebookLedger(BaseModel):
    """What one kernel recorded; rewritten whole after each check so a kill loses nothing."""

    notebook: str
    env: str
    run_id: str
    checks: list[CheckResult] = []

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.model_dump_json(indent=1))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> NotebookLedger:
        return cls.model_validate_json(path.read_text())


class NotebookResult(BaseModel):
    name: str  # file stem, e.g. "00_preflight"
    status: NotebookStatus
    duration_s: float
    error: str = ""  # why the notebook failed outside its checks (timeout, dead kernel, setup cell)
    output: str = ""  # executed notebook, relative to the run directory
    # CPU seconds its kernel used: the rest of duration_s was waiting (on the platform, on locks).
    kernel_cpu_s: float = 0.0


class SecretHit(BaseModel):
    """A secret found in a file a run wrote: where and in which encoding, never the value."""

    file: str  # relative to the run directory
    encoding: str  # raw, url, base64, base64url, hex, json, dsn
    secret: str  # where the value came from (e.g. services.postgres), not the value


class Leftover(BaseModel):
    """Something a run left in a store: where, how many, and the checks that made it."""

    store: str  # postgres, redis, clickhouse
    where: str  # e.g. "auth.users", "backend.threads (owner_id)", "keys auth:session:*", "table wb_..."
    count: int
    checks: list[str] = []  # check ids (or "<notebook> (a shared fixture)"); empty when none could be told
    example: str = ""  # one of them (an email, a key, a table name: never a value a secret could be in)


class StoreSweep(BaseModel):
    store: str
    swept: bool
    reason: str = ""  # why a store was not swept (no access in params, not reachable)
    found: int = 0


class LeftoverReport(BaseModel):
    """What the sweep after a run found of the run's namespace and of the users it created."""

    stores: list[StoreSweep] = []
    items: list[Leftover] = []

    @property
    def total(self) -> int:
        return sum(i.count for i in self.items)

    @classmethod
    def combined(cls, reports: list[LeftoverReport]) -> LeftoverReport:
        """Shards' sweeps as one (`--merge`): a store counts as swept where every shard swept it."""
        stores: dict[str, StoreSweep] = {}
        items: dict[tuple[str, str], Leftover] = {}
        for r in reports:
            for s in r.stores:
                have = stores.setdefault(s.store, StoreSweep(store=s.store, swept=True))
                have.swept = have.swept and s.swept
                have.found += s.found
                have.reason = "; ".join(dict.fromkeys(x for x in (have.reason, s.reason) if x))
            for i in r.items:
                have_item = items.setdefault((i.store, i.where), Leftover(store=i.store, where=i.where, count=0,
                                                                          example=i.example))
                have_item.count += i.count
                have_item.checks = sorted(set(have_item.checks) | set(i.checks))
        return cls(stores=list(stores.values()), items=list(items.values()))


class Totals(BaseModel):
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    notebooks_failed: int = 0


class RunResults(BaseModel):
    run_id: str
    env: str
    started_at: str
    finished_at: str = ""
    duration_s: float = 0.0
    only: list[str] = []
    notebooks: list[NotebookResult] = []
    checks: list[CheckResult] = []
    # The code the run was made from: runs of one `tree` ran the same code (flaky detection).
    commit: str = ""
    dirty: bool = False
    tree: str = ""
    shard: str = ""  # "K/N" when this run was one shard of a sharded run
    merged_from: list[str] = []  # run ids of the shards `--merge` joined into this run
    parallel: int = 0  # notebooks run at once (0: not recorded); at 1, each notebook had the machine alone
    stack_start_s: float = 0.0  # starting the embedded stack before the notebooks (0 when it was up already)
    stacks: int = 1  # embedded stacks the notebooks ran on (run_all gives each parallel slot one)
    # After the run, every file it wrote is scanned for every secret the env resolved.
    secrets_checked: int = 0
    files_scanned: int = 0
    secret_hits: list[SecretHit] = []
    # After the run, the stores are swept for what the run left behind (None: not swept).
    leftovers: LeftoverReport | None = None

    @property
    def totals(self) -> Totals:
        t = Totals(notebooks_failed=sum(n.status != "passed" for n in self.notebooks))
        for c in self.checks:
            setattr(t, c.status, getattr(t, c.status) + 1)
        return t

    @property
    def ok(self) -> bool:
        t = self.totals
        return t.failed == 0 and t.notebooks_failed == 0

    @property
    def leftovers_found(self) -> int:
        return self.leftovers.total if self.leftovers is not None else 0

    @property
    def green(self) -> bool:
        """Every check passed, no output holds a secret and the run left nothing in the stores:
        what the exit code and verdict say."""
        return self.ok and not self.secret_hits and not self.leftovers_found

    def write(self, path: Path) -> None:
        data = self.model_dump()
        data["totals"] = self.totals.model_dump()
        data["secrets_found"] = len(self.secret_hits)
        data["leftovers_found"] = self.leftovers_found
        path.write_text(json.dumps(data, indent=1))

    @classmethod
    def read(cls, path: Path) -> RunResults:
        return cls.model_validate_json(path.read_text())
