"""Klaviyo's rate limits and the sandbox's seeded fault injection."""

from __future__ import annotations

import time

import pytest
import requests
from support import API_KEY, LIST_ID

from klaviyo_sandbox import FaultPlan
from klaviyo_sandbox.limits import RateLimiter, parse_rate

HEADERS = {"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": "2026-07-15"}


def get_list(server) -> requests.Response:
    return requests.get(f"{server.url}/api/lists/{LIST_ID}", headers=HEADERS, timeout=10)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_parse_rate():
    assert parse_rate("10/s") == (10, 1)
    assert parse_rate("150/m") == (150, 60)


def test_burst_window_then_reset():
    clock = FakeClock(1000.2)
    limiter = RateLimiter(clock=clock)
    rates = ("10/s", "150/m")
    assert all(limiter.acquire("op", rates) is None for _ in range(10))
    assert limiter.acquire("op", rates) == 1
    assert limiter.acquire("other", rates) is None
    clock.now = 1001.0
    assert limiter.acquire("op", rates) is None


def test_steady_window_says_how_long_to_wait():
    clock = FakeClock(6000.0)
    limiter = RateLimiter(clock=clock)
    for second in range(15):
        clock.now = 6000.0 + second
        for _ in range(10):
            assert limiter.acquire("op", ("10/s", "150/m")) is None
    clock.now = 6015.5
    assert limiter.acquire("op", ("10/s", "150/m")) == 45


def test_scale_tightens_limits_but_never_below_one():
    limiter = RateLimiter(scale=0.001, clock=FakeClock())
    assert limiter.acquire("op", ("10/s",)) is None
    assert limiter.acquire("op", ("10/s",)) == 1


def test_sandbox_throttles_with_retry_after_and_code(sandbox_factory):
    server = sandbox_factory(rate_scale=0.1)
    statuses = [get_list(server) for _ in range(30)]
    throttled = [answer for answer in statuses if answer.status_code == 429]
    assert throttled, [answer.status_code for answer in statuses]
    assert [answer.status_code for answer in statuses[:7]] == [200] * 7
    answer = throttled[0]
    assert answer.headers["Retry-After"].isdigit()
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert answer.json()["errors"][0]["code"] == "throttled"


def test_rate_limits_can_be_turned_off(sandbox_factory):
    server = sandbox_factory(rate_limits=False, rate_scale=0.01)
    assert {get_list(server).status_code for _ in range(20)} == {200}


def statuses_with(plan: FaultPlan, sandbox_factory, count: int = 30) -> list[int | str]:
    server = sandbox_factory(faults=plan, rate_limits=False)
    seen: list[int | str] = []
    for _ in range(count):
        try:
            seen.append(get_list(server).status_code)
        except requests.ConnectionError:
            seen.append("dropped")
    return seen


def test_faults_repeat_for_the_same_seed(sandbox_factory):
    first = statuses_with(FaultPlan(server_error=0.3, throttle=0.2, drop=0.1, seed=42), sandbox_factory)
    second = statuses_with(FaultPlan(server_error=0.3, throttle=0.2, drop=0.1, seed=42), sandbox_factory)
    other = statuses_with(FaultPlan(server_error=0.3, throttle=0.2, drop=0.1, seed=7), sandbox_factory)
    assert first == second
    assert first != other
    assert {500, 502, 503, 504} & set(first)
    assert 429 in first
    assert "dropped" in first
    assert 200 in first


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        (FaultPlan(server_error=1.0, seed=1), {500, 502, 503, 504}),
        (FaultPlan(throttle=1.0), {429}),
        (FaultPlan(drop=1.0), {"dropped"}),
        (FaultPlan(), {200}),
    ],
)
def test_each_fault_kind(sandbox_factory, plan, expected):
    assert set(statuses_with(plan, sandbox_factory, 8)) <= expected


def test_faults_limited_to_some_operations(sandbox_factory):
    plan = FaultPlan(server_error=1.0, operations=frozenset({"POST /api/profile-bulk-import-jobs"}))
    assert set(statuses_with(plan, sandbox_factory, 5)) == {200}


def test_latency_is_added(sandbox_factory):
    server = sandbox_factory(faults=FaultPlan(latency=0.2), rate_limits=False)
    started = time.monotonic()
    get_list(server)
    assert time.monotonic() - started >= 0.2


def test_probabilities_are_checked():
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultPlan(throttle=1.5)
