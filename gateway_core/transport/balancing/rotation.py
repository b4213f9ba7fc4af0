"""Round robin and random, both weighted.

Round robin walks a precomputed schedule: the backend's endpoints in order when they weigh the
same, else the sequence nginx's smooth weighted round robin produces (weights 5, 1, 1 give
``a a b a c a a``: every endpoint's turns spread evenly, no bursts). The schedule is made once,
when the route table is built; a pick is one index step. Ejected endpoints and those a retry
avoids are stepped over, which keeps the others' proportions. Each worker starts at a random
point so workers do not move in step.

Random draws from the live endpoints in proportion to their weights.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Collection, Sequence
from itertools import accumulate
from time import monotonic

from gateway_core.messages import Endpoint, RequestContext
from gateway_core.transport.balancing.live import LiveBalancer
from gateway_core.transport.endpoint_state import EndpointStates

MAX_SCHEDULE = 10_000
"""Longest weighted schedule; weights scale down (proportions kept to rounding) past it."""
SCHEDULE_WORK = 2_000_000
"""Bound on schedule length x endpoints, the work of building a schedule (many endpoints: shorter)."""


class RoundRobin(LiveBalancer):
    """Each endpoint in turn, as often as its weight says (smooth weighted round robin)."""

    __slots__ = ("_schedule", "_live_schedule", "_position")

    def __init__(
        self,
        endpoints: tuple[Endpoint, ...],
        weights: Sequence[int] | None = None,
        registry: EndpointStates | None = None,
    ) -> None:
        super().__init__(endpoints, registry)
        self._schedule = smooth_schedule(endpoints, weights or [1] * len(endpoints))
        self._live_schedule = self._schedule
        self._position = random.randrange(len(self._schedule)) if self._schedule else 0

    def changed(self) -> None:
        excluded = self.excluded_ids
        self._live_schedule = [endpoint for endpoint in self._schedule if id(endpoint) not in excluded]

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        if self._generation != self.registry.generation or (0.0 < self._expires <= monotonic()):
            self.refresh()
        schedule = self._live_schedule
        length = len(schedule)
        if not length:
            return None
        position = self._position % length
        if avoid:
            return self._step_over(schedule, position, avoid)
        self._position = position + 1
        return schedule[position]

    def _step_over(self, schedule: Sequence[Endpoint], position: int, avoid: Collection[Endpoint]) -> Endpoint:
        """The next scheduled endpoint not in ``avoid``; the next one when all were tried."""
        length = len(schedule)
        for step in range(length):
            endpoint = schedule[(position + step) % length]
            if endpoint not in avoid:
                self._position = position + step + 1
                return endpoint
        self._position = position + 1
        return schedule[position]


class WeightedRandom(LiveBalancer):
    """A live endpoint drawn at random, in proportion to its weight."""

    __slots__ = ("_weights", "_uniform", "_cumulative", "_total")

    def __init__(
        self,
        endpoints: tuple[Endpoint, ...],
        weights: Sequence[int] | None = None,
        registry: EndpointStates | None = None,
    ) -> None:
        super().__init__(endpoints, registry)
        weights = weights or [1] * len(endpoints)
        self._weights = dict(zip(endpoints, weights, strict=True))
        self._uniform = len(set(weights)) <= 1
        self._cumulative: list[int] = []
        self._total = 0

    def changed(self) -> None:
        self._cumulative = list(accumulate(self._weights[endpoint] for endpoint in self.live))
        self._total = self._cumulative[-1] if self._cumulative else 0

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        if self._generation != self.registry.generation or (0.0 < self._expires <= monotonic()):
            self.refresh()
        live = self.live
        if not live:
            return None
        if avoid:
            return live[self._draw_avoiding(self.tried(avoid))]
        return live[self._draw()]

    def _draw(self) -> int:
        if self._uniform:
            return int(random.random() * len(self.live))
        return bisect_right(self._cumulative, random.random() * self._total)

    def _draw_avoiding(self, tried: set[int]) -> int:
        """A position not in ``tried`` (drawn again until one is), or any when all were tried."""
        if not tried or len(tried) == len(self.live):
            return self._draw()
        while True:
            position = self._draw()
            if position not in tried:
                return position


def smooth_schedule(endpoints: Sequence[Endpoint], weights: Sequence[int]) -> list[Endpoint]:
    """One period of smooth weighted round robin over ``endpoints`` (the nginx algorithm).

    Each step every endpoint's current weight grows by its weight, the largest is chosen and
    loses the total. Equal weights give the endpoints in order. Weights are divided by their
    greatest common divisor, and scaled down (proportions kept to rounding) when the period
    would be too long to compute at build time.
    """
    if len(set(weights)) <= 1:
        return list(endpoints)
    divisor = math.gcd(*weights)
    reduced = [weight // divisor for weight in weights]
    limit = max(len(reduced), min(MAX_SCHEDULE, SCHEDULE_WORK // len(reduced)))
    total = sum(reduced)
    if total > limit:
        reduced = [max(1, round(weight * limit / total)) for weight in reduced]
        total = sum(reduced)
    current = [0] * len(reduced)
    schedule = []
    indexes = range(len(reduced))
    for _ in range(total):
        for index in indexes:
            current[index] += reduced[index]
        chosen = max(indexes, key=current.__getitem__)
        current[chosen] -= total
        schedule.append(endpoints[chosen])
    return schedule
