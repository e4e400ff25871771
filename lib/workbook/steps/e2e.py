"""Steps of the journeys a person takes through the product (08_e2e): a new account through its
verification email, an agent run watched over WebSocket, a plan bought through the payment
provider, a model provider of one's own. Each step returns what landed where the user (or the
platform's stores) would see it, so a check asserts on the platform's answer, never on its input.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import plotly.graph_objects as go

from workbook.clients.platform.auth import AsyncAuth
from workbook.clients.platform.backend import AsyncBackend
from workbook.clients.platform.common import User, expect
from workbook.clients.platform.mail import AsyncMailbox, link_token
from workbook.clients.platform.ws import Socket
from workbook.clients.scope import Check
from workbook.steps.ws import RUN_END

VERIFY_SUBJECT = "Verify your email address"
RESET_SUBJECT = "Reset your password"
# The events every supervisor run sends a watching user, in the order they first appear (tool
# events come between agent_thinking and agent_completed when the branch calls tools).
RUN_EVENTS = ("agent_started", "agent_thinking", "agent_completed", "final_report")

MILLION = Decimal(1_000_000)

T = TypeVar("T")


@dataclass
class Timeline:
    """How long each step of a journey took, as the user waited for it (ms)."""

    steps: list[tuple[str, float]] = field(default_factory=list)

    async def step(self, name: str, action: Callable[[], Awaitable[T]]) -> T:
        t0 = time.perf_counter()
        out = await action()
        self.steps.append((name, (time.perf_counter() - t0) * 1000))
        return out

    def ms(self, name: str) -> float:
        return dict(self.steps)[name]

    def figure(self, budgets: dict[str, float]) -> go.Figure:
        names = [n for n, _ in self.steps]
        fig = go.Figure([go.Bar(name="took", x=names, y=[ms for _, ms in self.steps]),
                         go.Scatter(name="budget", x=names, y=[budgets[n] for n in names], mode="markers")])
        fig.update_layout(title="first-time user: each step vs its budget", yaxis_title="ms", height=320)
        return fig


async def register_unverified(ck: Check, auth: AsyncAuth) -> User:
    """A new account as registration leaves it (deleted with the check): not verified, logged in."""
    return await auth.new_user(ck)


async def verification_token(box: AsyncMailbox, user: User, count: int = 1) -> str:
    """The token of the newest verification email to `user` (waiting for `count` of them)."""
    return link_token((await box.arrived(user.email, VERIFY_SUBJECT, count))[-1])


async def verified_user(ck: Check, auth: AsyncAuth, box: AsyncMailbox) -> User:
    """A new account that followed its verification link and logged in again (its tokens say so)."""
    user = await register_unverified(ck, auth)
    expect(await auth.verify_email_raw(await verification_token(box, user)), 200, "verify email")
    await auth.login(user)
    return user


async def socket_agent_run(sock: Socket, thread_id: str, text: str, agent: str = "supervisor",
                           within_s: float | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start `agent` on `text` over the socket; the accepted run and its numbered events up to its
    end (what follows it, e.g. the assistant's `message_created`, is left out)."""
    await sock.send("start_agent", agent=agent, thread_id=thread_id, input=text)
    got = await sock.until(lambda m: m["type"] in ("run_accepted", "error"), within_s)
    assert got[-1]["type"] == "run_accepted", f"start_agent refused: {got[-1].get('payload')}"
    run = got[-1]["payload"]["run"]
    if not any(m["type"] in RUN_END and m.get("run_id") == run["id"] for m in sock.received):
        await sock.until(lambda m: m["type"] in RUN_END and m.get("run_id") == run["id"], within_s)
    events = [m for m in sock.received if m.get("run_id") == run["id"] and m.get("event_id") is not None]
    end = next(i for i, m in enumerate(events) if m["type"] in RUN_END)
    return run, events[:end + 1]


def first_seen(events: list[dict[str, Any]]) -> list[str]:
    """Event types in the order each first arrived."""
    seen: list[str] = []
    for m in events:
        if m["type"] not in seen:
            seen.append(m["type"])
    return seen


async def exhaust_quota(backend: AsyncBackend, user: User, thread_id: str, runs: int) -> None:
    """Start `runs` runs (each must be taken), so the next one meets the plan's limit."""
    for i in range(runs):
        expect(await backend.start_run_raw(user.access, thread_id, input=f"quota run {i}"), 202, f"run {i + 1}")


INVITE_SUBJECT = "You are invited to a team"


async def join_by_email(ck: Check, auth: AsyncAuth, backend: AsyncBackend, box: AsyncMailbox, owner: User,
                        team_id: str, role: str) -> User:
    """A verified user invited by `owner` with `role`, joined through the link in their invitation email."""
    user = await verified_user(ck, auth, box)
    expect(await backend.invite_raw(owner.access, team_id, user.email, role), 201, f"invite a {role}")
    token = link_token((await box.arrived(user.email, INVITE_SUBJECT))[-1])
    expect(await backend.accept_invite_raw(user.access, token), 200, f"{role} accepts")
    return user


async def team_of(ck: Check, auth: AsyncAuth, backend: AsyncBackend, box: AsyncMailbox,
                  roles: tuple[str, ...]) -> tuple[User, str, dict[str, User]]:
    """An owner, their team, and one member per role in `roles`, each joined by email."""
    owner = await verified_user(ck, auth, box)
    team = expect(await backend.create_team_raw(owner.access, f"team {ck.ns[-24:]}"), 201, "create team").json()
    members = {role: await join_by_email(ck, auth, backend, box, owner, team["id"], role) for role in roles}
    return owner, team["id"], members


def run_end_of(run_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] in RUN_END and m.get("run_id") == run_id


def texts_sent(log: list[dict[str, Any]]) -> str:
    """Everything the model was sent in these calls, as one string to search."""
    return "\n".join(str(m.get("content")) for call in log for m in call.get("messages") or [])


def billed_from_log(log: list[dict[str, Any]], prices: dict[str, tuple[Decimal, Decimal]]) -> tuple[int, int, Decimal]:
    """(prompt tokens, completion tokens, cost) of the model's answered calls, as the model counted
    them, priced per million tokens as the supply catalog lists them: what the bill must say."""
    prompt = completion = 0
    cost = Decimal(0)
    for call in log:
        if call["status"] != 200 or not call.get("usage"):
            continue
        p, c = call["usage"]["prompt_tokens"], call["usage"]["completion_tokens"]
        inp, out = prices[call["model"]]
        prompt, completion, cost = prompt + p, completion + c, cost + (p * inp + c * out) / MILLION
    return prompt, completion, cost


async def catalog_prices(backend: AsyncBackend, access: str) -> dict[str, tuple[Decimal, Decimal]]:
    return {m["model"]: (Decimal(m["input_usd_per_mtok"]), Decimal(m["output_usd_per_mtok"]))
            for m in await backend.supply_models(access)}


async def timed_socket_run(sock: Socket, thread_id: str, text: str) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                             float, float]:
    """`socket_agent_run`, plus how long the user waited (ms) for the run's first event and for its end."""
    t0 = time.perf_counter()
    await sock.send("start_agent", agent="supervisor", thread_id=thread_id, input=text)
    first = (await sock.until(lambda m: m.get("event_id") is not None and m["type"] == "agent_started"))[-1]
    first_ms = (time.perf_counter() - t0) * 1000
    await sock.until(lambda m: m["type"] in RUN_END and m.get("run_id") == first["run_id"])
    run_ms = (time.perf_counter() - t0) * 1000
    accepted = next(m for m in sock.received if m["type"] == "run_accepted")["payload"]["run"]
    events = [m for m in sock.received if m.get("run_id") == accepted["id"] and m.get("event_id") is not None]
    end = next(i for i, m in enumerate(events) if m["type"] in RUN_END)
    return accepted, events[:end + 1], first_ms, run_ms
