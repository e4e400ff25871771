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
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

PLAN_ENV = "WORKBOOK_LOAD_PLAN"
FINISHED = "workbook_finished"


def _plan() -> dict[str, Any]:
    return json.loads(Path(os.environ[PLAN_ENV]).read_text())


PLAN = _plan()


def _all_finished() -> bool:
    done = Path(PLAN["dir"]) / "finished"
    return done.is_dir() and len(list(done.iterdir())) >= PLAN["simulated_users"]


def _claim(directory: Path, count: int) -> int:
    directory.mkdir(exist_ok=True)
    for i in range(count):
        try:
            os.close(os.open(directory / str(i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return i
        except FileExistsError:
            continue
    raise StopUser()  # more simulated users than credentials: the extra ones do nothing


class _PlatformUser(FastHttpUser):
    """A user of the plan: one credential, a request quota, and a record of what it did."""

    abstract = True
    wait_time = constant(PLAN["wait_s"])

    def on_start(self) -> None:
        self.slot = _claim(Path(PLAN["dir"]) / "slots", len(PLAN["users"]))
        self.who = PLAN["users"][self.slot]
        self.left = PLAN["per_user_requests"]
        self.statuses: Counter[str] = Counter()
        # answered with 201 ("threads", "messages": a thread id per message), and sent ("sending_*"):
        # a request in flight when the run's time is up is stored but never answered to the user
        self.created: dict[str, Any] = {"threads": [], "messages": [], "sending_threads": 0, "sending_messages": []}
        self.tick = 0

    def on_stop(self) -> None:
        if not hasattr(self, "slot"):
            return
        out = {"slot": self.slot, "user_id": self.who["id"], "statuses": dict(self.statuses), "created": self.created}
        (Path(PLAN["dir"]) / f"done-{self.slot}.json").write_text(json.dumps(out))

    def _finished(self) -> None:
        """Out of requests: stop this user, and the whole run once every user of the plan is."""
        done = Path(PLAN["dir"]) / "finished"
        done.mkdir(exist_ok=True)
        (done / str(self.slot)).touch()
        runner = self.environment.runner
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
            if status in PLAN["expected_refusals"]:
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
        base = PLAN["backend_urls"][self.tick % len(PLAN["backend_urls"])]
        self.tick += 1
        self.created["sending_threads"] += 1
        created = self.call("POST", f"{base}/api/threads", "/api/threads", token,
                            json={"title": f"{self.who['ns']} write"})
        if created.status_code != 201:
            return
        thread = created.json()["id"]
        self.created["threads"].append(thread)
        for _ in range(PLAN["messages_per_thread"]):
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
        base = PLAN["auth_urls"][self.tick % len(PLAN["auth_urls"])]
        self.tick += 1
        self.call("POST", f"{base}/auth/login", "/auth/login", json={"email": self.who["email"],
                  "password": self.who["password"]}, headers={"X-Forwarded-For": self.who["ip"]})


@events.init.add_listener
def _end_when_all_finished(environment: Any, **_: Any) -> None:
    """On the master: quit (which collects every worker's last stats) once every simulated user
    used up its requests, instead of idling until the run time is over."""
    if not isinstance(environment.runner, MasterRunner):
        return
    ending: list[Any] = []

    def finished(environment: Any, msg: Any, **_: Any) -> None:
        if _all_finished() and not ending:
            ending.append(gevent.spawn(environment.runner.quit))

    environment.runner.register_message(FINISHED, finished)
