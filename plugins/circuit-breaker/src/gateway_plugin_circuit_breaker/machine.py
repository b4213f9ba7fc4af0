"""pybreaker's state machine, as the adapter drives it.

The states, a snapshot of a pybreaker storage, and the operations the adapter runs on a
pybreaker ``CircuitBreaker``: on the event loop's thread for memory storage, on the Redis
worker thread for ``CircuitRedisStorage``. Each operation first checks that the breaker is
still where the adapter expects it: with shared storage, another worker may have moved it.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass

import pybreaker

Operation = Callable[[pybreaker.CircuitBreaker], None]
"""Something to do to a pybreaker breaker."""

UNREACHABLE_FAIL_MAX = 2**62
"""``fail_max`` in failure-ratio mode: pybreaker never trips by count, the adapter opens it."""


class State(enum.Enum):
    """pybreaker's three states."""

    CLOSED = pybreaker.STATE_CLOSED
    OPEN = pybreaker.STATE_OPEN
    HALF_OPEN = pybreaker.STATE_HALF_OPEN


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A storage's state, read at one moment."""

    state: State
    opened_at: float | None
    """Unix time the breaker last opened (whole seconds in Redis)."""
    failures: int
    """Consecutive failures counted."""


class UpstreamFailure(Exception):
    """What pybreaker is told failed (its state objects count exceptions)."""


def record(breaker: pybreaker.CircuitBreaker, *, failure: str | None, trial: bool) -> None:
    """Count one call's result, if the breaker is still where the call was admitted."""
    expected = pybreaker.STATE_HALF_OPEN if trial else pybreaker.STATE_CLOSED
    if breaker.current_state != expected:
        return  # another worker moved the shared breaker meanwhile
    state = breaker.state
    if failure is None:
        state._handle_success()
        return
    with contextlib.suppress(pybreaker.CircuitBreakerError):  # raised when pybreaker opens the circuit
        state._handle_error(UpstreamFailure(failure), reraise=False)


def half_open(breaker: pybreaker.CircuitBreaker) -> None:
    """Open -> half-open (the reset timeout passed and a trial is starting)."""
    if breaker.current_state == pybreaker.STATE_OPEN:
        breaker.half_open()


def trip(breaker: pybreaker.CircuitBreaker) -> None:
    """Closed -> open (the failure ratio was reached)."""
    if breaker.current_state == pybreaker.STATE_CLOSED:
        breaker.open()


def snapshot(storage: pybreaker.CircuitBreakerStorage) -> Snapshot:
    """Read ``storage``; an unknown state (garbage in Redis) reads as closed, never refusing on it."""
    opened_at = storage.opened_at
    try:
        state = State(storage.state)
    except ValueError:
        state = State.CLOSED
    return Snapshot(state, opened_at.timestamp() if opened_at is not None else None, storage.counter)
