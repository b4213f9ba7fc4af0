"""The retry policy's rules, one by one: classification, safety, backoff and the retry budget."""

from __future__ import annotations

import random
import statistics
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway_core.errors import (
    BodyNotReplayableError,
    EndpointRefusedError,
    GatewayError,
    NoEndpointError,
    RequestTimeoutError,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamConnectTimeoutError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway_core.manifests.upstream_policy import DEFAULT_POLICY, RetryConfig, parse_upstream_policy
from gateway_core.transport.retry import (
    IDEMPOTENT_METHODS,
    RetryBudgets,
    RouteFlight,
    backoff_delay,
    error_failure,
    error_retry_reason,
    failure_sent,
    replay_safe,
    status_retry_reason,
)


class Body:
    """A request body that streams once, like the proxy's."""

    def __init__(self, consumed: bool) -> None:
        self.content_length: int | None = 3
        self.consumed = consumed

    async def chunks(self) -> AsyncIterator[bytes]:
        self.consumed = True
        yield b"abc"


def config(**values: Any) -> RetryConfig:
    return RetryConfig.model_validate(values)


# --- classification -----------------------------------------------------------------------------


class BreakerOpen(GatewayError):
    status = 503
    code = "circuit_open"


class EndpointBreakerOpen(BreakerOpen, EndpointRefusedError):
    """What a per-endpoint circuit breaker raises (a subclass of both)."""


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (UpstreamConnectError("refused"), "connect-failure"),
        (UpstreamConnectTimeoutError("connect timed out"), "connect-failure"),
        (EndpointRefusedError("open"), "refused"),
        (EndpointBreakerOpen("open"), "refused"),
        (UpstreamClosedError("closed before the head"), "reset"),
        (UpstreamTimeoutError("no head in time"), "timeout"),
        (UpstreamProtocolError("garbage"), "protocol-error"),
        (NoEndpointError("none"), None),
        (BodyNotReplayableError("gone"), None),
        (RequestTimeoutError("client slow"), None),
        (BreakerOpen("service breaker"), None),
        (UpstreamError("other"), None),
        (GatewayError("a plugin's"), None),
    ],
)
def test_error_failure_classifies_each_error(error: BaseException, failure: str | None) -> None:
    assert error_failure(error) == failure


def test_only_connect_failures_and_refusals_happen_before_sending() -> None:
    assert not failure_sent("connect-failure")
    assert not failure_sent("refused")
    for failure in ("reset", "timeout", "protocol-error"):
        assert failure_sent(failure)


@pytest.mark.parametrize(
    ("on", "retried"),
    [
        ((), set()),
        (("connect-failure", "reset"), {"connect-failure", "refused", "reset"}),
        (("connect-failure",), {"connect-failure", "refused"}),
        (("reset",), {"reset"}),
        (("timeout",), {"timeout"}),
        (("5xx",), {"connect-failure", "refused", "reset", "timeout", "protocol-error"}),
        (("gateway-error",), {"connect-failure", "refused", "reset", "timeout", "protocol-error"}),
        (("retriable-status",), set()),
    ],
)
def test_error_retry_reason_follows_on(on: tuple[str, ...], retried: set[str]) -> None:
    policy = config(on=on, statuses=[429] if "retriable-status" in on else [])
    failures = ("connect-failure", "refused", "reset", "timeout", "protocol-error")
    assert {failure for failure in failures if error_retry_reason(failure, policy) == failure} == retried


def test_default_config_retries_connect_failures_and_resets_only() -> None:
    policy = RetryConfig()
    assert policy.attempts == 3
    assert error_retry_reason("connect-failure", policy) == "connect-failure"
    assert error_retry_reason("reset", policy) == "reset"
    assert error_retry_reason("timeout", policy) is None
    assert all(status_retry_reason(status, policy) is None for status in range(200, 600))


def test_status_retry_reason_5xx_takes_every_5xx() -> None:
    policy = config(on=["5xx"])
    assert [status for status in range(100, 600) if status_retry_reason(status, policy)] == list(range(500, 600))
    assert status_retry_reason(503, policy) == "503"


def test_status_retry_reason_gateway_error_takes_502_503_504_only() -> None:
    policy = config(on=["gateway-error"])
    assert [status for status in range(100, 600) if status_retry_reason(status, policy)] == [502, 503, 504]


def test_status_retry_reason_retriable_status_takes_the_listed_ones() -> None:
    policy = config(on=["retriable-status"], statuses=[409, 429, 500])
    assert [status for status in range(100, 600) if status_retry_reason(status, policy)] == [409, 429, 500]
    assert status_retry_reason(429, policy) == "429"


def test_on_is_read_as_written_in_yaml() -> None:
    """YAML 1.1 reads a bare ``on`` key as true; the annotation still means ``on``."""
    text = "attempts: 2\non: [gateway-error, retriable-status]\nstatuses: [429]"
    policy, problems = parse_upstream_policy({"meta-native.io/retries": text})
    assert problems == ()
    assert policy.retries.on == ("gateway-error", "retriable-status")
    assert policy.retries.attempts == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("on: [reset]\nstatuses: [429]", "only retried when `on` includes `retriable-status`"),
        ("on: [retriable-status]", "`retriable-status` needs the `statuses`"),
        ("on: [teapot]", "on.0: Input should be 'connect-failure'"),
        ("attempts: 0", "attempts"),
    ],
)
def test_a_retries_annotation_that_cannot_work_rejects_the_ingress(text: str, problem: str) -> None:
    policy, problems = parse_upstream_policy({"meta-native.io/retries": text})
    assert policy == DEFAULT_POLICY
    assert len(problems) == 1
    assert problems[0].startswith("annotation meta-native.io/retries")
    assert problem in problems[0]


# --- safety -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH"])
def test_a_request_never_sent_may_go_again_whatever_its_method(method: str) -> None:
    assert replay_safe(sent=False, method=method, body=None)
    assert replay_safe(sent=False, method=method, body=Body(consumed=False))


def test_after_sending_only_idempotent_methods_may_go_again() -> None:
    methods = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH", "CONNECT"]
    safe = {method for method in methods if replay_safe(sent=True, method=method, body=None)}
    assert safe == set(IDEMPOTENT_METHODS) == {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}


@pytest.mark.parametrize("sent", [True, False])
def test_a_streamed_body_never_goes_again(sent: bool) -> None:
    assert not replay_safe(sent=sent, method="PUT", body=Body(consumed=True))


def test_an_idempotent_request_whose_body_was_not_streamed_may_go_again() -> None:
    assert replay_safe(sent=True, method="PUT", body=Body(consumed=False))


# --- backoff ------------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_and_is_capped() -> None:
    def ceiling(low: float, high: float) -> float:
        return high

    assert [backoff_delay(n, 0.025, 0.25, ceiling) for n in range(1, 7)] == [0.025, 0.05, 0.1, 0.2, 0.25, 0.25]
    assert backoff_delay(200, 0.025, 0.25, ceiling) == 0.25


def test_backoff_is_zero_when_switched_off() -> None:
    assert backoff_delay(1, 0.0, 0.25) == 0.0
    assert backoff_delay(1, 0.025, 0.0) == 0.0
    assert backoff_delay(0, 0.025, 0.25) == 0.0


def test_backoff_is_jittered_over_the_whole_interval() -> None:
    rng = random.Random(7)
    samples = [backoff_delay(3, 0.025, 0.25, rng.uniform) for _ in range(5000)]
    assert all(0.0 <= sample <= 0.1 for sample in samples)
    assert 0.045 < statistics.fmean(samples) < 0.055  # uniform on [0, 0.1]: mean 0.05
    assert min(samples) < 0.005
    assert max(samples) > 0.095
    assert len(set(samples)) > 4000, "delays must not come in step"


# --- budget -------------------------------------------------------------------------------------


def test_min_retries_allowed_at_low_traffic() -> None:
    flight = RouteFlight()
    flight.requests = 1
    policy = config(budget_percent=20, min_retries=3)
    allowed = 0
    while flight.may_retry(policy):
        flight.retries += 1
        allowed += 1
    assert allowed == 3


def test_budget_percent_of_requests_in_flight_at_high_traffic() -> None:
    flight = RouteFlight()
    flight.requests = 200
    policy = config(budget_percent=20, min_retries=3)
    allowed = 0
    while flight.may_retry(policy):
        flight.retries += 1
        allowed += 1
    assert allowed == 40


def test_an_empty_budget_allows_no_retry() -> None:
    flight = RouteFlight()
    flight.requests = 1000
    assert not flight.may_retry(config(budget_percent=0, min_retries=0))


def test_budgets_count_per_route_and_forget_idle_routes() -> None:
    budgets = RetryBudgets()
    first = budgets.enter("default/a")
    second = budgets.enter("default/a")
    other = budgets.enter("default/b")
    assert first is second
    assert first.requests == 2
    assert other.requests == 1
    assert len(budgets) == 2
    budgets.leave("default/a", first)
    assert budgets.get("default/a") is first  # one request still in flight
    budgets.leave("default/a", first)
    budgets.leave("default/b", other)
    assert budgets.get("default/a") is None
    assert len(budgets) == 0


def test_a_route_keeps_its_flight_across_table_rebuilds() -> None:
    """The budget is keyed by route id: a new table's route of the same id shares it."""
    budgets = RetryBudgets()
    before = budgets.enter("default/shop:shop.test:Prefix:/")
    after = budgets.enter("default/shop:shop.test:Prefix:/")
    assert before is after
    assert after.requests == 2
