"""Retry policy: which failed tries may be repeated, how many retries a route may have in
flight, and how long to wait before trying an endpoint again.

Pure decisions over plain values, so each rule is unit-tested on its own; the loop that acts
on them is ``Pipeline._tries``. A failed try is repeated only when all of these hold:

- ``retries.on`` names the failure (:func:`retry_reason`);
- sending it again is safe (:func:`replay_safe`): nothing was sent yet (a connect failure,
  an endpoint refused by a plugin), or the method is idempotent (RFC 9110 §9.2.2) and the
  request body was not streamed;
- tries are left, and so is time (``retries.timeout``);
- the route's retry budget allows another retry in flight (:meth:`RouteFlight.may_retry`).

It must not send anything or know about routes beyond their id.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from gateway_core.errors import (
    EndpointRefusedError,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamConnectTimeoutError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway_core.manifests.upstream_policy import RetryConfig
from gateway_core.messages import RequestBody

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods a client may repeat without changing the effect (RFC 9110 §9.2.2)."""

GATEWAY_ERROR_STATUSES = frozenset({502, 503, 504})

CONNECT_FAILURE = "connect-failure"
REFUSED = "refused"
RESET = "reset"
TIMEOUT = "timeout"
PROTOCOL_ERROR = "protocol-error"

_NOT_SENT = frozenset({CONNECT_FAILURE, REFUSED})
"""Failures before any byte of the request reached the upstream."""

_RETRIED_BY: dict[str, frozenset[str]] = {
    CONNECT_FAILURE: frozenset({"connect-failure", "5xx", "gateway-error"}),
    REFUSED: frozenset({"connect-failure", "5xx", "gateway-error"}),
    RESET: frozenset({"reset", "5xx", "gateway-error"}),
    TIMEOUT: frozenset({"timeout", "5xx", "gateway-error"}),
    PROTOCOL_ERROR: frozenset({"5xx", "gateway-error"}),
}
"""For each kind of failed try, the ``retries.on`` values that retry it. As in Envoy, ``5xx``
and ``gateway-error`` also cover the failures the gateway itself answers with 502/503/504."""


def error_failure(error: BaseException) -> str | None:
    """The kind of failure a try raising ``error`` had, or None when no retry can help.

    None for: no endpoint at all, a request body that cannot be sent again, the client's
    own errors (a body timeout, a disconnect), and any other plugin's refusal.
    """
    if isinstance(error, EndpointRefusedError):
        return REFUSED
    if isinstance(error, (UpstreamConnectError, UpstreamConnectTimeoutError)):
        return CONNECT_FAILURE
    if isinstance(error, UpstreamClosedError):
        return RESET
    if isinstance(error, UpstreamTimeoutError):
        return TIMEOUT
    if isinstance(error, UpstreamProtocolError):
        return PROTOCOL_ERROR
    return None


def failure_sent(failure: str) -> bool:
    """Whether a try that failed this way may have reached the upstream."""
    return failure not in _NOT_SENT


def error_retry_reason(failure: str, config: RetryConfig) -> str | None:
    """``failure`` (the metric reason) when ``config.on`` retries it, else None."""
    retried_by = _RETRIED_BY[failure]
    for value in config.on:
        if value in retried_by:
            return failure
    return None


def status_retry_reason(status: int, config: RetryConfig) -> str | None:
    """The status as text (the metric reason) when ``config.on`` retries it, else None."""
    on = config.on
    if status >= 500 and ("5xx" in on or (status in GATEWAY_ERROR_STATUSES and "gateway-error" in on)):
        return str(status)
    if status in config.statuses and "retriable-status" in on:
        return str(status)
    return None


def replay_safe(*, sent: bool, method: str, body: RequestBody | None) -> bool:
    """Whether the request may go to an upstream again.

    A streamed body is gone (it was never held in memory). Otherwise a request that never
    reached the upstream is safe whatever its method, and one that did only when its method
    is idempotent.
    """
    if body is not None and body.consumed:
        return False
    return not sent or method in IDEMPOTENT_METHODS


def backoff_delay(
    repeat: int, base: float, cap: float, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """Seconds to wait before the ``repeat``-th retry to an endpoint already tried (1, 2, ...).

    "Full jitter": uniform between 0 and ``base * 2**(repeat - 1)``, capped at ``cap``, so
    many clients failing together do not come back in step.
    """
    if repeat < 1 or base <= 0 or cap <= 0:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(repeat - 1, 30))
    return uniform(0.0, ceiling)


class RouteFlight:
    """Requests and retries of one route in flight in this worker (its retry budget)."""

    __slots__ = ("requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        """Requests in their upstream call (from the first try to the accepted response head)."""
        self.retries = 0
        """Retries started and not yet ended."""

    def may_retry(self, config: RetryConfig) -> bool:
        """Whether one more retry fits: at most ``budget_percent`` of the requests in flight,
        but ``min_retries`` at any time (Envoy's retry budget)."""
        allowed = max(float(config.min_retries), self.requests * config.budget_percent / 100.0)
        return self.retries < allowed


class RetryBudgets:
    """Every route's :class:`RouteFlight` in this worker, by route id.

    Keyed by id rather than held by the route object, so a table rebuilt while requests
    are in flight keeps counting them; an entry lives while its route has requests in flight.
    """

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, RouteFlight] = {}

    def enter(self, route_id: str) -> RouteFlight:
        """A request of ``route_id`` starts its upstream call."""
        flight = self._flights.get(route_id)
        if flight is None:
            flight = self._flights[route_id] = RouteFlight()
        flight.requests += 1
        return flight

    def leave(self, route_id: str, flight: RouteFlight) -> None:
        """That request's upstream call ended (a response head was accepted, or it failed)."""
        flight.requests -= 1
        if flight.requests <= 0 and self._flights.get(route_id) is flight:
            del self._flights[route_id]

    def get(self, route_id: str) -> RouteFlight | None:
        """The route's flight, if it has requests in flight."""
        return self._flights.get(route_id)

    def __len__(self) -> int:
        return len(self._flights)
