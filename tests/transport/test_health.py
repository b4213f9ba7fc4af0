"""Outlier detection: the ejection arithmetic, then a detector driven with a test clock."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from gateway_core.manifests.upstream_policy import DEFAULT_POLICY, OutlierDetection, parse_upstream_policy
from gateway_core.messages import Endpoint
from gateway_core.transport.endpoint_state import EndpointStates
from gateway_core.transport.health import OutlierDetector, decayed_ejections, ejection_seconds, may_eject

ENDPOINTS = tuple(Endpoint("10.0.0.1", port) for port in (8001, 8002, 8003))


def policy(**values: Any) -> OutlierDetection:
    return OutlierDetection.model_validate(values)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A detector over ``endpoints`` with a test clock; ``fail``/``succeed`` report tries."""

    def __init__(self, config: OutlierDetection, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> None:
        self.config = config
        self.endpoints = endpoints
        self.states = EndpointStates()
        self.clock = Clock()
        self.ejected_services: list[str] = []
        self.detector = OutlierDetector(self.states, on_ejection=self.ejected_services.append, clock=self.clock)

    def fail(self, endpoint: Endpoint, times: int = 1) -> bool:
        ejected = False
        for _ in range(times):
            ejected = self.detector.failed(
                self.states.get(endpoint),
                config=self.config,
                endpoints=self.endpoints,
                service="default/api",
                reason="status 503",
            )
        return ejected

    def succeed(self, endpoint: Endpoint) -> None:
        self.detector.succeeded(self.states.get(endpoint))

    def out(self) -> list[Endpoint]:
        return [endpoint for endpoint in self.endpoints if self.states.get(endpoint).ejected(self.clock.now)]

    def remaining(self, endpoint: Endpoint) -> float:
        return self.states.get(endpoint).ejected_until - self.clock.now


# --- arithmetic ---------------------------------------------------------------------------------


def test_ejection_time_doubles_per_ejection_up_to_the_cap() -> None:
    config = policy(base_ejection_time=30, max_ejection_time=300)
    assert [ejection_seconds(n, config) for n in range(6)] == [30, 60, 120, 240, 300, 300]
    assert ejection_seconds(10_000, config) == 300


def test_ejections_decay_one_per_base_time_in_service() -> None:
    config = policy(base_ejection_time=10)
    assert decayed_ejections(3, 0, config) == 3
    assert decayed_ejections(3, 9.9, config) == 3
    assert decayed_ejections(3, 10, config) == 2
    assert decayed_ejections(3, 25, config) == 1
    assert decayed_ejections(3, 1000, config) == 0
    assert decayed_ejections(0, 1000, config) == 0


@pytest.mark.parametrize(
    ("total", "max_percent", "ejectable"),
    [
        (1, 100, 0),  # never the last endpoint
        (2, 50, 1),
        (2, 100, 1),
        (3, 50, 1),
        (3, 10, 0),  # one of three is 33 %, over 10 %
        (4, 50, 2),
        (10, 50, 5),
        (10, 100, 9),
        (10, 0, 0),
    ],
)
def test_at_most_the_share_and_never_all(total: int, max_percent: int, ejectable: int) -> None:
    ejected = 0
    while may_eject(ejected, total, max_percent):
        ejected += 1
    assert ejected == ejectable


def test_a_cap_below_the_base_time_rejects_the_ingress() -> None:
    policy_, problems = parse_upstream_policy(
        {"meta-native.io/outlier-detection": "base_ejection_time: 60\nmax_ejection_time: 30"}
    )
    assert policy_ == DEFAULT_POLICY
    assert problems == (
        "annotation meta-native.io/outlier-detection: Value error, "
        "`max_ejection_time` must be at least `base_ejection_time`",
    )


# --- the detector -------------------------------------------------------------------------------


def test_consecutive_failures_eject_for_the_base_time() -> None:
    harness = Harness(policy(consecutive_failures=3, base_ejection_time=30))
    first = ENDPOINTS[0]
    assert not harness.fail(first, 2)
    generation = harness.states.generation
    assert harness.fail(first)
    assert harness.out() == [first]
    assert harness.remaining(first) == pytest.approx(30)
    assert harness.states.generation == generation + 1
    assert harness.ejected_services == ["default/api"]
    assert harness.states.get(first).failures == 0, "an ejection starts a new count"


def test_a_success_resets_the_count() -> None:
    harness = Harness(policy(consecutive_failures=3))
    first = ENDPOINTS[0]
    for _ in range(10):
        harness.fail(first, 2)
        harness.succeed(first)
    assert harness.out() == []
    assert harness.ejected_services == []


def test_the_endpoint_comes_back_when_its_time_passes() -> None:
    harness = Harness(policy(consecutive_failures=1, base_ejection_time=5))
    harness.fail(ENDPOINTS[0])
    harness.clock.now += 4.9
    assert harness.out() == [ENDPOINTS[0]]
    harness.clock.now += 0.2
    assert harness.out() == []


def test_repeat_ejections_grow_then_decay_after_a_healthy_spell() -> None:
    harness = Harness(policy(consecutive_failures=1, base_ejection_time=10, max_ejection_time=1000))
    first = ENDPOINTS[0]
    seen = []
    for _ in range(4):  # fails again as soon as it is back
        harness.fail(first)
        seen.append(harness.remaining(first))
        harness.clock.now = harness.states.get(first).ejected_until
    assert seen == [10, 20, 40, 80]
    assert harness.states.get(first).ejections == 4
    harness.clock.now += 25  # back in service for 2.5 base times: two ejections forgotten
    harness.fail(first)
    assert harness.remaining(first) == 40
    assert harness.states.get(first).ejections == 3


def test_the_cap_bounds_repeat_ejections() -> None:
    harness = Harness(policy(consecutive_failures=1, base_ejection_time=10, max_ejection_time=35))
    first = ENDPOINTS[0]
    seen = []
    for _ in range(5):
        harness.fail(first)
        seen.append(harness.remaining(first))
        harness.clock.now = harness.states.get(first).ejected_until
    assert seen == [10, 20, 35, 35, 35]


def test_decay_to_zero_starts_over_at_the_base_time() -> None:
    harness = Harness(policy(consecutive_failures=1, base_ejection_time=10))
    first = ENDPOINTS[0]
    harness.fail(first)
    harness.clock.now += 10
    harness.fail(first)
    assert harness.remaining(first) == 20
    harness.clock.now += 20 + 100  # long healthy spell
    harness.fail(first)
    assert harness.remaining(first) == 10
    assert harness.states.get(first).ejections == 1


def test_a_late_failure_of_an_ejected_endpoint_does_not_eject_it_again() -> None:
    """Tries that started before the ejection still report; the ejection is not extended."""
    harness = Harness(policy(consecutive_failures=2, base_ejection_time=10))
    first = ENDPOINTS[0]
    harness.fail(first, 2)
    until = harness.states.get(first).ejected_until
    harness.clock.now += 1
    assert not harness.fail(first, 5)
    assert harness.states.get(first).ejected_until == until
    assert harness.ejected_services == ["default/api"]


def test_the_share_limit_holds_back_more_ejections_until_one_returns() -> None:
    harness = Harness(policy(consecutive_failures=2, base_ejection_time=10, max_ejected_percent=50))
    first, second, _ = ENDPOINTS
    assert harness.fail(first, 2)
    assert not harness.fail(second, 5), "two of three would be over 50 %"
    assert harness.out() == [first]
    harness.clock.now += 10.5  # first is back; second is still failing
    assert harness.fail(second)
    assert harness.out() == [second]


def test_a_single_endpoint_is_never_ejected() -> None:
    only = (ENDPOINTS[0],)
    harness = Harness(policy(consecutive_failures=1, max_ejected_percent=100), only)
    assert not harness.fail(only[0], 50)
    assert harness.out() == []


def test_disabled_detection_never_ejects() -> None:
    harness = Harness(policy(enabled=False, consecutive_failures=1))
    assert not harness.fail(ENDPOINTS[0], 20)
    assert harness.out() == []


def test_one_log_line_per_ejection(caplog: pytest.LogCaptureFixture) -> None:
    harness = Harness(policy(consecutive_failures=2, base_ejection_time=7))
    with caplog.at_level(logging.WARNING, logger="gateway_core.health"):
        harness.fail(ENDPOINTS[1], 2)
        harness.fail(ENDPOINTS[1], 3)  # already out: nothing more to log
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1
    assert "10.0.0.1:8002" in lines[0]
    assert "default/api" in lines[0]
    assert "7s" in lines[0]
    assert "status 503" in lines[0]


async def test_the_return_bumps_the_generation_on_time() -> None:
    """Balancers cache their live list by generation: the return must move it."""
    states = EndpointStates()
    detector = OutlierDetector(states)
    config = policy(consecutive_failures=1, base_ejection_time=0.2)
    state = states.get(ENDPOINTS[0])
    detector.failed(state, config=config, endpoints=ENDPOINTS, service="default/api", reason="reset")
    ejected_generation = states.generation
    await asyncio.sleep(0.05)
    assert states.generation == ejected_generation
    for _ in range(200):
        if states.generation != ejected_generation:
            break
        await asyncio.sleep(0.02)
    assert states.generation == ejected_generation + 1
    assert not state.ejected(time.monotonic())
