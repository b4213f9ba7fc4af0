"""What one worker knows about each upstream endpoint, kept across route-table rebuilds.

Balancers read it (outstanding requests, latency), outlier detection writes to it (failures
in a row, ejection), the pipeline feeds it around every try. It is keyed by endpoint, not by
route, so a table rebuilt for an unrelated change does not forget that an endpoint is slow
or failing; entries of endpoints no longer in any table are dropped at the next rebuild.

Single-threaded (one event loop per worker): plain attributes, no locks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from gateway_core.messages import Endpoint

EWMA_DECAY = 10.0
"""Seconds over which an old latency sample loses most of its weight (peak EWMA's tau)."""


class EndpointState:
    """One endpoint's live numbers."""

    __slots__ = (
        "endpoint",
        "outstanding",
        "latency",
        "latency_at",
        "failures",
        "ejected_until",
        "ejections",
        "last_ejected",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.outstanding = 0
        """Tries sent to it whose response has not ended."""
        self.latency = 0.0
        """Peak-EWMA of the time to response head, in seconds (0 until measured)."""
        self.latency_at = 0.0
        self.failures = 0
        """Failures in a row (reset by a success)."""
        self.ejected_until = 0.0
        """``time.monotonic()`` until which outlier detection keeps it out (0 = not ejected)."""
        self.ejections = 0
        """Times ejected in a row without a healthy spell; each doubles the ejection time."""
        self.last_ejected = 0.0

    def observe_latency(self, seconds: float, now: float | None = None) -> None:
        """Fold one time-to-head sample into the peak-EWMA: a slower sample counts at once."""
        now = time.monotonic() if now is None else now
        if seconds >= self.latency or self.latency_at == 0.0:
            self.latency = seconds
        else:
            weight = math.exp(-(now - self.latency_at) / EWMA_DECAY)
            self.latency = self.latency * weight + seconds * (1.0 - weight)
        self.latency_at = now

    def ejected(self, now: float) -> bool:
        return self.ejected_until > now


class EndpointStates:
    """Every endpoint's state in this worker; ``generation`` changes whenever an ejection does."""

    __slots__ = ("_states", "generation")

    def __init__(self) -> None:
        self._states: dict[Endpoint, EndpointState] = {}
        self.generation = 0
        """Bumped on every ejection and return, so balancers can cache their live endpoint list."""

    def get(self, endpoint: Endpoint) -> EndpointState:
        """The state of ``endpoint``, created on first use."""
        state = self._states.get(endpoint)
        if state is None:
            state = self._states[endpoint] = EndpointState(endpoint)
        return state

    def of(self, endpoints: Iterable[Endpoint]) -> tuple[EndpointState, ...]:
        """The states of ``endpoints``, in their order."""
        return tuple(self.get(endpoint) for endpoint in endpoints)

    def retain(self, endpoints: Iterable[Endpoint]) -> None:
        """Forget endpoints not in ``endpoints`` and idle (called after a table rebuild)."""
        keep = set(endpoints)
        for endpoint in [e for e, state in self._states.items() if e not in keep and state.outstanding == 0]:
            del self._states[endpoint]

    def changed(self) -> None:
        """Record that some endpoint was ejected or returned."""
        self.generation += 1

    def __len__(self) -> int:
        return len(self._states)
