"""Load-aware balancing by the power of two choices: least request and peak EWMA.

Each pick draws two distinct live endpoints at random and takes the cheaper one. Two random
choices keep almost all the benefit of scanning every endpoint (the load spread is
exponentially better than one random choice) at constant cost, and no two workers or replicas
herd onto the same "best" endpoint the way always taking the global minimum would.

- least request: the cost is the endpoint's outstanding tries in this worker.
- peak EWMA: the cost is latency x (outstanding + 1), where latency is the endpoint's peak
  EWMA of time to response head, decayed towards zero for as long as no sample arrives (as in
  Finagle), so an endpoint that was slow once is probed again after a while instead of being
  shunned forever. An endpoint not measured yet costs 0 while it has nothing in flight (so a
  new endpoint is tried at once) and more than any measured one while its first tries are out
  (so it is not flooded before its first answer) or after they failed.

Weights: 0 takes an endpoint out of rotation; other weights are refused by the config model,
as these strategies weigh endpoints by their measured load instead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from math import exp
from random import random
from time import monotonic

from gateway_core.messages import Endpoint, RequestContext
from gateway_core.transport.balancing.live import LiveBalancer
from gateway_core.transport.endpoint_state import EWMA_DECAY, EndpointState

UNMEASURED_BUSY = 1e9
"""The cost of an endpoint with tries in flight and no latency sample yet: above any measured one."""
_DECAY_RATE = 1.0 / EWMA_DECAY


class TwoChoices(LiveBalancer):
    """What both strategies share: the picks that are not a plain draw of two."""

    __slots__ = ()

    def _few_or_avoiding(self, avoid: Collection[Endpoint], cheaper: Cheaper, now: float) -> Endpoint | None:
        """A pick among fewer than two live endpoints, or one skipping those already tried."""
        states = self.live_states
        count = len(states)
        if count < 2:
            return states[0].endpoint if states else None
        tried = self.tried(avoid)
        if len(tried) == count - 1:
            return next(state for position, state in enumerate(states) if position not in tried).endpoint
        if len(tried) >= count:
            tried = set()
        first = _draw(count, tried)
        second = _draw(count, tried | {first})
        return cheaper(states[first], states[second], now).endpoint


class LeastRequest(TwoChoices):
    """Of two random live endpoints, the one with fewer outstanding tries."""

    __slots__ = ()

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        if self._generation != self.registry.generation or (0.0 < self._expires <= monotonic()):
            self.refresh()
        states = self.live_states
        count = len(states)
        if count < 2 or avoid:
            return self._few_or_avoiding(avoid, least_outstanding, 0.0)
        first = int(random() * count)
        second = int(random() * (count - 1))
        if second >= first:
            second += 1
        one, other = states[first], states[second]
        return one.endpoint if one.outstanding <= other.outstanding else other.endpoint


class PeakEwma(TwoChoices):
    """Of two random live endpoints, the one with the lower latency x (outstanding + 1)."""

    __slots__ = ()

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        now = monotonic()
        if self._generation != self.registry.generation or (0.0 < self._expires <= now):
            self.refresh()
        states = self.live_states
        count = len(states)
        if count < 2 or avoid:
            return self._few_or_avoiding(avoid, lower_ewma_cost, now)
        first = int(random() * count)
        second = int(random() * (count - 1))
        if second >= first:
            second += 1
        one, other = states[first], states[second]
        one_latency, other_latency = one.latency, other.latency
        if one_latency and other_latency:  # both measured, the usual case: ewma_cost inlined
            one_cost = one_latency * exp((one.latency_at - now) * _DECAY_RATE) * (one.outstanding + 1)
            other_cost = other_latency * exp((other.latency_at - now) * _DECAY_RATE) * (other.outstanding + 1)
            return one.endpoint if one_cost <= other_cost else other.endpoint
        return one.endpoint if ewma_cost(one, now) <= ewma_cost(other, now) else other.endpoint


Cheaper = Callable[[EndpointState, EndpointState, float], EndpointState]


def least_outstanding(one: EndpointState, other: EndpointState, now: float) -> EndpointState:
    """The state with fewer outstanding tries (``one`` on a tie)."""
    return one if one.outstanding <= other.outstanding else other


def lower_ewma_cost(one: EndpointState, other: EndpointState, now: float) -> EndpointState:
    """The state with the lower peak-EWMA cost (``one`` on a tie)."""
    return one if ewma_cost(one, now) <= ewma_cost(other, now) else other


def _draw(count: int, taken: set[int]) -> int:
    """A random position below ``count`` not in ``taken`` (some position must be free)."""
    while True:
        position = int(random() * count)
        if position not in taken:
            return position


def ewma_cost(state: EndpointState, now: float) -> float:
    """Peak-EWMA latency, decayed since its last sample, times (outstanding + 1).

    Unmeasured: 0 while idle, above any measured endpoint while busy or failing (an endpoint
    that never answers has no latency, and must not look free).
    """
    latency = state.latency
    if latency == 0.0:
        busy = state.outstanding + state.failures
        return UNMEASURED_BUSY + busy if busy else 0.0
    return latency * exp((state.latency_at - now) * _DECAY_RATE) * (state.outstanding + 1)
