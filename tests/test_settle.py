"""What counts as a platform that serves as before, read from /health/ready answers."""

from __future__ import annotations

from workbook.settle import unsettled

SETTLED = {"status": "ready", "checks": {
    "postgres": {"status": "ok"}, "auth": {"status": "ok", "breaker": "closed"},
    "events": {"status": "ok", "subscribed": True, "breaker": "closed"}}}


def test_a_ready_backend_with_closed_breakers_and_its_subscription_is_settled() -> None:
    assert unsettled(SETTLED) == []


def test_a_half_open_breaker_is_settled_its_next_call_is_the_trial() -> None:
    half = {**SETTLED, "checks": {**SETTLED["checks"], "auth": {"status": "degraded", "breaker": "half_open"}}}
    assert unsettled(half) == []


def test_not_ready_an_open_breaker_or_no_subscription_each_named() -> None:
    broken = {"status": "not_ready", "checks": {
        "redis": {"status": "down"}, "auth": {"breaker": "open"},
        "events": {"status": "degraded", "subscribed": False, "breaker": "open"}}}
    assert unsettled(broken) == ["status not_ready", "auth breaker open", "events breaker open",
                                 "events not subscribed"]


def test_the_model_breaker_open_in_the_dependency_map_is_named() -> None:
    # The backend reports its model breaker only in `dependencies` (its `checks.llm` is the probe).
    opened = {**SETTLED, "dependencies": {"llm": {"status": "degraded", "required": False, "breaker": "open"},
                                          "redis": {"status": "ok", "required": True, "breaker": "closed"}}}
    assert unsettled(opened) == ["llm breaker open"]


def test_a_redis_listener_not_back_yet_is_named() -> None:
    waiting = {**SETTLED, "listeners": {"events": True, "signing_keys": True, "config": False}}
    assert unsettled(waiting) == ["config listener down"]
    assert unsettled({**SETTLED, "listeners": {"events": True, "signing_keys": True, "config": True}}) == []
