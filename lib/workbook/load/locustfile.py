"""The platform's journeys as Locust users. Locust runs this file in processes of its own
(`workbook.load.runner` starts them); it is never imported by a notebook's kernel, because
Locust's gevent patches the standard library and would break the kernel's asyncio.

What a run needs comes from the plan file named by `WORKBOOK_LOAD_PLAN` (written by the
runner into the check's temporary directory, 0600): the journey, the target URLs, one
credential per simulated user (tokens and passwords never travel on a command line or an
environment variable), and each user's request quota, so a run is bounded in requests as well
as in time. Each simulated user claims one credential (a file created exclusively in the plan's
directory: unique across every worker process of this machine) and, when it stops, writes what
it did (requests by endpoint and status, ids it created) next to the plan for the runner to
read: Locust's own stats have latencies by endpoint, not statuses or per-user counts.

    locust -f lib/workbook/load/locustfile.py --headless ...     (the runner's command line)

A team's own Locust master (params `load.master_host`; workers on other machines share no
directory) gets the plan as the `--workbook-plan` argument of the run the runner posts to its
web API, which Locust forwards to every worker with its users; each user then asks the master
for its credential's slot and sends the master its record, and the runner reads the run back
from the master's `/workbook/run` (records, stats, history). The master is stopped, not quit,
when every user is done: it stays for the next run.

    locust -f lib/workbook/load/locustfile.py --master --class-picker      (the team's master)
    locust -f - --worker --master-host MASTER --processes 4               (each worker machine)
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from gevent.event import AsyncResult
from locust import FastHttpUser, events, task
from locust.exception import StopUser
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

PLAN_ENV = "WORKBOOK_LOAD_PLAN"
FINISHED, CLAIM, SLOT, RECORD = "workbook_finished", "workbook_claim", "workbook_slot", "workbook_record"
# A user waits this long for the master to give it a slot before it gives up (and does nothing).
CLAIM_TIMEOUT_S = 10.0
# The runner wrote the plan on this machine: a run it started, whose processes share its directory.
LOCAL = PLAN_ENV in os.environ
FILE_PLAN: dict[str, Any] = json.loads(Path(os.environ[PLAN_ENV]).read_text()) if LOCAL else {}


def plan_of(environment: Any) -> dict[str, Any]:
    """The run's plan: the runner's file, or the JSON posted to a master the runner did not start."""
    return FILE_PLAN if LOCAL else json.loads(environment.parsed_options.workbook_plan or "{}")


@dataclass
class Collected:
    """What a master the runner did not start holds of its current run, for `/workbook/run`."""

    run: str = ""
    users: int = 0
    credentials: int = 0
    claimed: int = 0
    finished: set[int] = field(default_factory=set)
    records: list[dict[str, Any]] = field(default_factory=list)


RUN = Collected()
SLOTS: dict[str, AsyncResult] = {}  # a user's pending claim, by its key


def _all_finished() -> bool:
    done = Path(FILE_PLAN["dir"]) / "finished"
    return done.is_dir() and len(list(done.iterdir())) >= FILE_PLAN["simulated_users"]


def _claim(directory: Path, count: int) -> int:
    directory.mkdir(exist_ok=True)
    for i in range(count):
        try:
            os.close(os.open(directory / str(i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return i
        except FileExistsError:
            continue
    raise StopUser()  # more simulated users than credentials: the extra ones do nothing


def _claim_from_master(runner: Any) -> int:
    key = uuid.uuid4().hex
    SLOTS[key] = AsyncResult()
    try:
        runner.send_message(CLAIM, key)
        slot = SLOTS[key].get(timeout=CLAIM_TIMEOUT_S)
    except gevent.Timeout:
        slot = None
    finally:
        SLOTS.pop(key, None)
    if slot is None:
        raise StopUser()
    return int(slot)


class _PlatformUser(FastHttpUser):
    """A user of the plan: one credential, a request quota, and a record of what it did."""

    abstract = True

    def wait_time(self) -> float:
        return float(self.plan["wait_s"])

    def on_start(self) -> None:
        self.plan = plan_of(self.environment)
        self.recorded = False
        if LOCAL:
            self.slot = _claim(Path(self.plan["dir"]) / "slots", len(self.plan["users"]))
        else:
            self.slot = _claim_from_master(self.environment.runner)
        self.who = self.plan["users"][self.slot]
        self.left = self.plan["per_user_requests"]
        self.statuses: Counter[str] = Counter()
        # answered with 201 ("threads", "messages": a thread id per message), and sent ("sending_*"):
        # a request in flight when the run's time is up is stored but never answered to the user
        self.created: dict[str, Any] = {"threads": [], "messages": [], "sending_threads": 0, "sending_messages": []}
        self.tick = 0

    def on_stop(self) -> None:
        if not hasattr(self, "slot") or self.recorded:
            return
        out = {"slot": self.slot, "user_id": self.who["id"], "statuses": dict(self.statuses), "created": self.created}
        if LOCAL:
            (Path(self.plan["dir"]) / f"done-{self.slot}.json").write_text(json.dumps(out))
        else:
            self.environment.runner.send_message(RECORD, {"run": self.plan["run"], "record": out})
        self.recorded = True

    def _finished(self) -> None:
        """Out of requests: stop this user, and the whole run once every user of the plan is."""
        runner = self.environment.runner
        if not LOCAL:
            # Record, stats, then the message, on one ordered channel (see below).
            self.on_stop()
            if isinstance(runner, WorkerRunner):
                runner._send_stats()
            runner.send_message(FINISHED, {"run": self.plan["run"], "slot": self.slot})
            raise StopUser()
        done = Path(self.plan["dir"]) / "finished"
        done.mkdir(exist_ok=True)
        (done / str(self.slot)).touch()
        if isinstance(runner, WorkerRunner):
            # This worker's stats first, then the message, on the same ordered channel: when the
            # master has every user's FINISHED it has every request (it gives workers only 0.5 s to
            # report once it quits, which a loaded machine misses: requests were lost that way).
            runner._send_stats()
            runner.send_message(FINISHED, self.slot)
        elif _all_finished():
            gevent.spawn(runner.quit)
        raise StopUser()

    def call(self, method: str, url: str, name: str, token: str | None = None, **kwargs: Any) -> Any:
        """One request, counted against the quota and by status; a 5xx or a transport error is
        Locust's failure, a refusal the journey expects (a 429, a 503 with Retry-After) is
        counted by status and marked as it is."""
        if self.left <= 0:
            self._finished()
        self.left -= 1
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with self.client.request(method, url, name=name, headers=headers, catch_response=True, **kwargs) as resp:
            status = resp.status_code or 0
            self.statuses[f"{method} {name} {status}"] += 1
            if status in self.plan["expected_refusals"]:
                resp.success()
            return resp


class CoreJourney(_PlatformUser):
    """A member's everyday path: list threads, open one, write in it, read it back."""

    @task
    def journey(self) -> None:
        token = self.who["access"]
        self.call("GET", "/api/users/me", "/api/users/me", token)
        self.call("GET", "/api/threads", "/api/threads", token)
        self.created["sending_threads"] += 1
        created = self.call("POST", "/api/threads", "/api/threads", token, json={"title": f"{self.who['ns']} load"})
        if created.status_code != 201:
            return
        thread = created.json()["id"]
        self.created["threads"].append(thread)
        self.created["sending_messages"].append(thread)
        msg = self.call("POST", f"/api/threads/{thread}/messages", "/api/threads/[id]/messages", token,
                        json={"content": f"load {uuid.uuid4().hex}"})
        if msg.status_code == 201:
            self.created["messages"].append(thread)
        self.call("GET", f"/api/threads/{thread}/messages", "/api/threads/[id]/messages", token)


class HealthLive(_PlatformUser):
    """Liveness only: the cheapest request a backend answers (what wrk is compared with)."""

    @task
    def live(self) -> None:
        self.call("GET", "/health/live", "/health/live")


class ThreadsRead(_PlatformUser):
    """One authenticated read: token verification plus a small query."""

    @task
    def read(self) -> None:
        self.call("GET", "/api/threads", "/api/threads", self.who["access"])


class WriteHeavy(_PlatformUser):
    """Writes only: a thread, then messages in it, as fast as the quota allows."""

    @task
    def writes(self) -> None:
        token = self.who["access"]
        base = self.plan["backend_urls"][self.tick % len(self.plan["backend_urls"])]
        self.tick += 1
        self.created["sending_threads"] += 1
        created = self.call("POST", f"{base}/api/threads", "/api/threads", token,
                            json={"title": f"{self.who['ns']} write"})
        if created.status_code != 201:
            return
        thread = created.json()["id"]
        self.created["threads"].append(thread)
        for _ in range(self.plan["messages_per_thread"]):
            self.created["sending_messages"].append(thread)
            msg = self.call("POST", f"{base}/api/threads/{thread}/messages", "/api/threads/[id]/messages", token,
                            json={"content": f"write {uuid.uuid4().hex}"})
            if msg.status_code == 201:
                self.created["messages"].append(thread)


class LoginStorm(_PlatformUser):
    """Login attempts spread over every auth instance of the plan, each from the address
    (X-Forwarded-For, through a trusted proxy) and with the password its credential names."""

    @task
    def login(self) -> None:
        base = self.plan["auth_urls"][self.tick % len(self.plan["auth_urls"])]
        self.tick += 1
        self.call("POST", f"{base}/auth/login", "/auth/login", json={"email": self.who["email"],
                  "password": self.who["password"]}, headers={"X-Forwarded-For": self.who["ip"]})


@events.init_command_line_parser.add_listener
def _plan_argument(parser: Any) -> None:
    parser.add_argument("--workbook-plan", default="", include_in_web_ui=False, is_secret=True,
                        help="the workbook's run plan as JSON (posted by the workbook's runner, never typed)")


@events.init.add_listener
def _end_when_all_finished(environment: Any, **_: Any) -> None:
    """On the master of a run the runner started: quit (which collects every worker's last stats)
    once every simulated user used up its requests, instead of idling until the run time is over."""
    if not LOCAL or not isinstance(environment.runner, MasterRunner):
        return
    ending: list[Any] = []

    def finished(environment: Any, msg: Any, **_: Any) -> None:
        if _all_finished() and not ending:
            ending.append(gevent.spawn(environment.runner.quit))

    environment.runner.register_message(FINISHED, finished)


@events.init.add_listener
def _serve_runs(environment: Any, **_: Any) -> None:
    """On a master the runner did not start (or a lone process with a web UI): hand out slots,
    collect records, stop once every user is done, and show the run at `/workbook/run`."""
    runner = environment.runner
    if LOCAL:
        return
    if isinstance(runner, (WorkerRunner, LocalRunner)):
        runner.register_message(SLOT, _slot_given)
    if not isinstance(runner, (MasterRunner, LocalRunner)):
        return

    def claim(environment: Any, msg: Any, **_: Any) -> None:
        slot = RUN.claimed if RUN.claimed < RUN.credentials else None
        RUN.claimed += slot is not None
        environment.runner.send_message(SLOT, {"key": msg.data, "slot": slot}, client_id=msg.node_id)

    def record(environment: Any, msg: Any, **_: Any) -> None:
        if msg.data["run"] == RUN.run:
            RUN.records.append(msg.data["record"])

    def finished(environment: Any, msg: Any, **_: Any) -> None:
        if msg.data["run"] != RUN.run:
            return
        RUN.finished.add(msg.data["slot"])
        if len(RUN.finished) >= RUN.users:
            gevent.spawn(environment.runner.stop)

    runner.register_message(CLAIM, claim)
    runner.register_message(RECORD, record)
    runner.register_message(FINISHED, finished)
    if environment.web_ui is None:
        return

    @environment.web_ui.app.route("/workbook/run")
    @environment.web_ui.auth_required_if_enabled
    def current_run() -> Any:
        return {"run": RUN.run, "state": runner.state, "users": RUN.users, "claimed": RUN.claimed,
                "finished": len(RUN.finished), "records": RUN.records,
                "workers": runner.worker_count if isinstance(runner, MasterRunner) else 0,
                "classes": sorted(c.__name__ for c in environment.user_classes),
                "stats": environment.stats.serialize_stats(), "history": environment.stats.history}


def _slot_given(environment: Any, msg: Any, **_: Any) -> None:
    if (waiting := SLOTS.get(msg.data["key"])) is not None:
        waiting.set(msg.data["slot"])


@events.test_start.add_listener
def _new_run(environment: Any, **_: Any) -> None:
    """A master's (or lone process's) new run: what it collects starts empty, under the run's id."""
    global RUN
    if LOCAL or isinstance(environment.runner, WorkerRunner):
        return
    plan = plan_of(environment)
    RUN = Collected(run=plan.get("run", ""), users=int(plan.get("simulated_users", 0)),
                    credentials=len(plan.get("users", [])))
