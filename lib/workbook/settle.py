"""After a fault, the platform is handed back to other notebooks only once it serves as before.

A restarted Redis answers at once, but each backend still has its Redis breaker open until the
reset, and its broadcast subscription down until it retries: a check of another notebook that
starts then sees events on one instance and not the other (seen in a full run: 03's
cross-instance checks red while 02's Redis faults ended). So a fault lets go of the services it
held alone only when every platform service among them is ready, has no breaker open and, for a
backend, listens for other instances' events; and if that takes longer than a service start, it
is the fault's check that fails, naming what did not come back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from workbook.clients import tls
from workbook.errors import WorkbookError
from workbook.params import Env

# The services whose /health/ready reports their dependencies and breakers.
PLATFORM = ("auth", "backend", "backend2")
POLL_S = 0.05


def unsettled(ready: dict[str, Any]) -> list[str]:
    """What keeps a /health/ready answer from "serving as before"; empty when nothing does."""
    found = [] if ready.get("status") == "ready" else [f"status {ready.get('status')}"]
    # The probes ("checks") and the dependency map both carry breakers: the backend's model
    # breaker is only in the map.
    for section in ("checks", "dependencies"):
        for name, dep in (ready.get(section) or {}).items():
            if isinstance(dep, dict) and dep.get("breaker") == "open":
                found.append(f"{name} breaker open")
            if isinstance(dep, dict) and dep.get("subscribed") is False:
                found.append(f"{name} not subscribed")
    # Each Redis subscription comes back on its own clock after Redis does (a hot reload, a key
    # retirement not heard meanwhile): all of them, not only the events'.
    for name, up in (ready.get("listeners") or {}).items():
        if up is False:
            found.append(f"{name} listener down")
    return list(dict.fromkeys(found))


def wait_settled(env: Env, services: Iterable[str]) -> None:
    """Block until each platform service in `services` is settled, within the env's start-up time."""
    names = [s for s in PLATFORM if s in set(services) and s in env.services]
    if not names:
        return
    deadline = time.monotonic() + env.timeouts.startup_s
    left: dict[str, list[str]] = {}
    with httpx.Client(timeout=env.timeouts.connect_s, verify=tls.context()) as http:
        while True:
            left = {}
            for name in names:
                try:
                    why = unsettled(http.get(f"{env.services[name].url}/health/ready").json())
                except (httpx.HTTPError, ValueError) as e:
                    why = [type(e).__name__]
                if why:
                    left[name] = why
            if not left or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
    if left:
        raise WorkbookError(f"the fault left the platform unsettled after {env.timeouts.startup_s:g} s: "
                            + "; ".join(f"{n}: {', '.join(w)}" for n, w in left.items()))
