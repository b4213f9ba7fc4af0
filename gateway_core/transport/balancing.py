"""Endpoint choice: load-balancing strategies over a backend's ready endpoints.

A balancer is made once per backend per route table and asked once per upstream attempt,
so ``pick`` must be cheap. More strategies (weighted, least-outstanding, EWMA, hashing)
plug in here behind the same :class:`gateway_core.messages.Balancer` protocol.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from gateway_core.manifests.upstream_policy import LoadBalancing
from gateway_core.messages import Balancer, Endpoint, RequestContext
from gateway_core.transport.endpoint_state import EndpointStates


class RoundRobin:
    """Each endpoint in turn; the starting point is random so workers do not move in step."""

    __slots__ = ("_endpoints", "_next")

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self._endpoints = endpoints
        self._next = random.randrange(len(endpoints)) if endpoints else 0

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        endpoints = self._endpoints
        if not endpoints:
            return None
        index = self._next
        self._next = (index + 1) % len(endpoints)
        return endpoints[index]


class Balancers:
    """The balancer factory of one worker: makes each backend's balancer from its config.

    Every balancer it makes shares ``states`` (outstanding requests, latency, ejections per
    endpoint), which outlive route-table rebuilds.
    """

    def __init__(self, states: EndpointStates) -> None:
        self.states = states

    def __call__(self, endpoints: tuple[Endpoint, ...], config: LoadBalancing) -> Balancer:
        return RoundRobin(endpoints)


def round_robin(endpoints: tuple[Endpoint, ...], config: LoadBalancing | None = None) -> Balancer:
    """The simplest balancer factory: round robin whatever the config says."""
    return RoundRobin(endpoints)
