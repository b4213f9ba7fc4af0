"""Passive health (outlier detection): an endpoint that fails in a row rests for a while.

The pipeline reports every try that reached an endpoint: a success resets the endpoint's
failures, a failure (a transport error, or 502/503/504 from the upstream) counts one more.
At ``consecutive_failures`` the endpoint is ejected, that is, its ``EndpointState`` is marked
out until a time the balancers check; it comes back on its own when that time passes.

- The ejection lasts ``base_ejection_time * 2**ejections`` (capped at ``max_ejection_time``):
  an endpoint that keeps failing rests longer each time.
- ``ejections`` decays: it drops by one for every ``base_ejection_time`` the endpoint spent
  back in service since its last ejection ended (counted when it is next ejected).
- At most ``max_ejected_percent`` of the backend's endpoints are out at once, and never the
  last one: a backend with one endpoint never ejects it.

Every ejection and every return bumps ``EndpointStates.generation`` (balancers cache their
live lists by it) and logs one line. Single-threaded like the states it writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from gateway_core.manifests.upstream_policy import OutlierDetection
from gateway_core.messages import Endpoint
from gateway_core.transport.endpoint_state import EndpointState, EndpointStates

logger = logging.getLogger("gateway_core.health")

FAILURE_STATUSES = frozenset({502, 503, 504})
"""Upstream statuses that count as a failure of the endpoint."""


def ejection_seconds(ejections: int, config: OutlierDetection) -> float:
    """How long an endpoint ejected ``ejections`` times before (after decay) stays out."""
    return float(min(config.max_ejection_time, config.base_ejection_time * 2.0 ** min(ejections, 30)))


def decayed_ejections(ejections: int, healthy_seconds: float, config: OutlierDetection) -> int:
    """``ejections`` less one for every ``base_ejection_time`` spent back in service."""
    if ejections <= 0 or healthy_seconds <= 0:
        return max(ejections, 0)
    return max(0, ejections - int(healthy_seconds // config.base_ejection_time))


def may_eject(ejected: int, total: int, max_percent: int) -> bool:
    """Whether one more of ``total`` endpoints may go out while ``ejected`` are out already."""
    out = ejected + 1
    return out < total and out * 100 <= max_percent * total


class OutlierDetector:
    """Judges tries per endpoint and ejects the ones failing in a row.

    ``on_ejection(service)`` is called once per ejection (the metrics counter); ``clock`` is
    ``time.monotonic`` unless a test gives another.
    """

    __slots__ = ("states", "_on_ejection", "_clock")

    def __init__(
        self,
        states: EndpointStates,
        *,
        on_ejection: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.states = states
        self._on_ejection = on_ejection
        self._clock = clock

    @staticmethod
    def succeeded(state: EndpointState) -> None:
        """A try reached ``state``'s endpoint and got a healthy answer."""
        state.failures = 0

    def failed(
        self,
        state: EndpointState,
        *,
        config: OutlierDetection,
        endpoints: Sequence[Endpoint],
        service: str,
        reason: str,
    ) -> bool:
        """A try of ``state``'s endpoint failed; True when that ejected it.

        ``endpoints`` are the backend's (the share limit counts over them), ``service`` its
        label for the log and metrics, ``reason`` what the last failure was.
        """
        state.failures += 1
        if not config.enabled or state.failures < config.consecutive_failures:
            return False
        now = self._clock()
        if state.ejected(now):
            return False  # a try that started before the ejection
        ejected = 0
        for endpoint in endpoints:
            if endpoint != state.endpoint and self.states.get(endpoint).ejected(now):
                ejected += 1
        if not may_eject(ejected, len(endpoints), config.max_ejected_percent):
            return False  # failures stay counted: it goes out once another comes back
        self._eject(state, config, now, service, reason)
        return True

    def _eject(self, state: EndpointState, config: OutlierDetection, now: float, service: str, reason: str) -> None:
        previous_end = state.ejected_until
        healthy = now - previous_end if previous_end > 0 else 0.0
        ejections = decayed_ejections(state.ejections, healthy, config)
        seconds = ejection_seconds(ejections, config)
        failures = state.failures
        state.ejections = ejections + 1
        state.ejected_until = now + seconds
        state.last_ejected = now
        state.failures = 0
        self.states.changed()
        logger.warning(
            "endpoint %s of %s ejected for %gs after %d failures in a row (last: %s; ejection %d)",
            state.endpoint,
            service,
            seconds,
            failures,
            reason,
            state.ejections,
            extra={"endpoint": str(state.endpoint), "service": service},
        )
        self._schedule_return(state, state.ejected_until, seconds)
        if self._on_ejection is not None:
            self._on_ejection(service)

    def _schedule_return(self, state: EndpointState, until: float, seconds: float) -> None:
        """Bump the generation when the ejection ends, so cached live lists take it back."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test): the balancers still compare ejected_until
        loop.call_later(seconds, self._returned, state, until)

    def _returned(self, state: EndpointState, until: float) -> None:
        if state.ejected_until != until:
            return
        self.states.changed()
        logger.info("endpoint %s is back in service after its ejection", state.endpoint)
