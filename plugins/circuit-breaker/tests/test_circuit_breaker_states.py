"""The asyncio adapter over pybreaker, driven directly: every state transition, both modes."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pybreaker
import pytest
from gateway_plugin_circuit_breaker import Breaker, CircuitBreakerConfig, Refusal, State, Ticket
from gateway_plugin_circuit_breaker.window import FailureWindow


def _state(breaker: Breaker) -> State:
    """The state, read through a call (mypy would narrow a re-read property)."""
    return breaker.state


def _breaker(**config: Any) -> Breaker:
    return Breaker("test/api", CircuitBreakerConfig.model_validate(config))


async def _ticket(breaker: Breaker) -> Ticket:
    admission = await breaker.admit()
    assert isinstance(admission, Ticket), f"expected a ticket, got {admission}"
    return admission


async def _refused(breaker: Breaker) -> Refusal:
    admission = await breaker.admit()
    assert isinstance(admission, Refusal), f"expected a refusal, got {admission}"
    return admission


async def _fail(breaker: Breaker, times: int) -> None:
    for _ in range(times):
        (await _ticket(breaker)).fail("status 500")


async def _until_due(breaker: Breaker) -> None:
    """Wait (polling, no fixed sleep) until the open breaker would let a trial through."""
    deadline = time.monotonic() + 3.0
    while await breaker.refusal() is not None:
        assert time.monotonic() < deadline, "the breaker never became due for a trial"
        await asyncio.sleep(0.02)


async def test_closed_opens_after_fail_max_consecutive_failures() -> None:
    breaker = _breaker(fail_max=3, reset_timeout=30)
    await _fail(breaker, 2)
    assert _state(breaker) is State.CLOSED
    await _fail(breaker, 1)
    assert _state(breaker) is State.OPEN


async def test_a_success_resets_the_consecutive_count() -> None:
    breaker = _breaker(fail_max=3, reset_timeout=30)
    await _fail(breaker, 2)
    (await _ticket(breaker)).succeed()
    await _fail(breaker, 2)
    assert _state(breaker) is State.CLOSED
    await _fail(breaker, 1)
    assert _state(breaker) is State.OPEN


async def test_open_refuses_with_the_remaining_time_and_no_ticket() -> None:
    breaker = _breaker(fail_max=1, reset_timeout=30)
    await _fail(breaker, 1)
    refusal = await _refused(breaker)
    assert 29 < refusal.retry_after <= 30
    assert refusal.header == "30"
    peeked = await breaker.refusal()
    assert peeked is not None
    assert peeked.retry_after == pytest.approx(refusal.retry_after, abs=0.5)


async def test_open_becomes_half_open_after_reset_timeout_with_one_trial_at_a_time() -> None:
    breaker = _breaker(fail_max=1, reset_timeout=0.2)
    await _fail(breaker, 1)
    await _refused(breaker)
    await _until_due(breaker)
    trial = await _ticket(breaker)
    assert trial.trial
    assert _state(breaker) is State.HALF_OPEN
    second = await _refused(breaker)
    assert second.header == "1"
    assert isinstance(await breaker.refusal(), Refusal)
    trial.succeed()
    assert _state(breaker) is State.CLOSED
    assert not (await _ticket(breaker)).trial


async def test_a_failed_trial_opens_again_for_a_full_reset_timeout() -> None:
    breaker = _breaker(fail_max=2, reset_timeout=0.2)
    await _fail(breaker, 2)
    await _until_due(breaker)
    (await _ticket(breaker)).fail("upstream_connect_failed")
    assert _state(breaker) is State.OPEN
    refusal = await _refused(breaker)
    assert 0.1 < refusal.retry_after <= 0.2


async def test_success_threshold_needs_that_many_trials_one_after_another() -> None:
    breaker = _breaker(fail_max=1, reset_timeout=0.2, success_threshold=2)
    await _fail(breaker, 1)
    await _until_due(breaker)
    first = await _ticket(breaker)
    await _refused(breaker)
    first.succeed()
    assert _state(breaker) is State.HALF_OPEN
    second = await _ticket(breaker)
    assert second.trial
    second.succeed()
    assert _state(breaker) is State.CLOSED


async def test_a_released_trial_lets_the_next_call_be_the_trial() -> None:
    breaker = _breaker(fail_max=1, reset_timeout=0.2)
    await _fail(breaker, 1)
    await _until_due(breaker)
    (await _ticket(breaker)).release()  # e.g. the client went away
    assert _state(breaker) is State.HALF_OPEN
    trial = await _ticket(breaker)
    assert trial.trial
    trial.fail("status 502")
    assert _state(breaker) is State.OPEN


async def test_results_of_calls_admitted_before_the_breaker_opened_are_ignored() -> None:
    breaker = _breaker(fail_max=2, reset_timeout=0.2)
    slow = await _ticket(breaker)
    await _fail(breaker, 2)
    await _until_due(breaker)
    trial = await _ticket(breaker)
    slow.succeed()  # a success from before: must not close the half-open breaker
    assert _state(breaker) is State.HALF_OPEN
    trial.fail("status 500")
    assert _state(breaker) is State.OPEN


async def test_a_ticket_reports_once() -> None:
    breaker = _breaker(fail_max=2, reset_timeout=30)
    ticket = await _ticket(breaker)
    ticket.fail("status 500")
    ticket.fail("status 500")
    ticket.succeed()
    assert _state(breaker) is State.CLOSED
    await _fail(breaker, 1)
    assert _state(breaker) is State.OPEN


async def test_ratio_mode_waits_for_min_requests_then_opens_on_the_ratio() -> None:
    breaker = _breaker(failure_ratio=0.5, min_requests=6, window=10, reset_timeout=30)
    for _ in range(3):
        (await _ticket(breaker)).succeed()
    await _fail(breaker, 2)
    assert _state(breaker) is State.CLOSED  # 2 of 5: below min_requests
    await _fail(breaker, 1)
    assert _state(breaker) is State.OPEN  # 3 of 6 = 0.5


async def test_ratio_mode_ignores_consecutive_failures_below_the_ratio() -> None:
    breaker = _breaker(failure_ratio=0.8, min_requests=4, window=10, reset_timeout=30)
    for _ in range(10):
        (await _ticket(breaker)).succeed()
    await _fail(breaker, 8)  # 8 in a row, but 8 of 18 < 0.8
    assert _state(breaker) is State.CLOSED


async def test_ratio_mode_trial_and_a_fresh_window_after_closing() -> None:
    breaker = _breaker(failure_ratio=0.5, min_requests=2, window=10, reset_timeout=0.2)
    await _fail(breaker, 2)
    assert _state(breaker) is State.OPEN
    await _until_due(breaker)
    (await _ticket(breaker)).succeed()
    assert _state(breaker) is State.CLOSED
    await _fail(breaker, 1)  # the window starts empty: 1 call is below min_requests
    assert _state(breaker) is State.CLOSED


def test_the_window_forgets_calls_older_than_its_length() -> None:
    window = FailureWindow(1.0, buckets=10)
    window.add(True, 100.0)
    window.add(False, 100.55)
    assert window.counts(100.6) == (2, 1)
    assert window.counts(100.95) == (2, 1)
    assert window.counts(101.05) == (1, 0)  # the 100.0 slice aged out
    assert window.counts(200.0) == (0, 0)
    window.add(True, 200.0)
    assert window.tripped(200.0, ratio=1.0, min_calls=1)
    assert not window.tripped(200.0, ratio=1.0, min_calls=2)


def test_the_ratio_is_met_exactly() -> None:
    window = FailureWindow(10.0)
    for index in range(10):
        window.add(index < 3, 5.0)
    assert window.tripped(5.0, ratio=0.3, min_calls=10)


async def test_state_changes_are_logged_with_the_last_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway_plugin_circuit_breaker")
    breaker = _breaker(fail_max=1, reset_timeout=0.2)
    await _fail(breaker, 1)
    await _until_due(breaker)
    (await _ticket(breaker)).succeed()
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "circuit breaker test/api opened (last failure: status 500); refusing calls for 0.2s",
        "circuit breaker test/api is half-open",
        "circuit breaker test/api is closed",
    ]
    assert caplog.records[0].levelno == logging.WARNING


async def test_the_state_machine_is_pybreakers() -> None:
    """The adapter drives pybreaker's own breaker: its storage shows the same state."""
    breaker = _breaker(fail_max=2, reset_timeout=30)
    await _fail(breaker, 1)
    local: pybreaker.CircuitBreaker = breaker._local
    assert (local.current_state, local.fail_counter) == ("closed", 1)
    await _fail(breaker, 1)
    assert local.current_state == "open"
