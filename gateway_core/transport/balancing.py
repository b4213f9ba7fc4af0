"""Endpoint choice: load-balancing strategies over a backend's ready endpoints.

A balancer is made once per backend per route table and asked once per upstream attempt,
so ``pick`` must be cheap. More strategies (weighted, least-outstanding, EWMA, hashing)
plug in here behind the same :class:`gateway_core.messages.Balancer` protocol.
"""

from __future__ import annotations

import random

from gateway_core.messages import Balancer, Endpoint, RequestContext


class RoundRobin:
    """Each endpoint in turn; the starting point is random so workers do not move in step."""

    __slots__ = ("_endpoints", "_next")

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self._endpoints = endpoints
        self._next = random.randrange(len(endpoints)) if endpoints else 0

    def pick(self, ctx: RequestContext | None) -> Endpoint | None:
        endpoints = self._endpoints
        if not endpoints:
            return None
        index = self._next
        self._next = (index + 1) % len(endpoints)
        return endpoints[index]


def round_robin(endpoints: tuple[Endpoint, ...]) -> Balancer:
    """The default balancer factory."""
    return RoundRobin(endpoints)
