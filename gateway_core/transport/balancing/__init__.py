"""Endpoint choice: the load-balancing strategies behind ``meta-native.io/load-balance``.

:class:`Balancers` is the factory the route-table build calls once per backend (in a worker
thread), so everything a strategy derives from its endpoints (a schedule, a hash ring, cookie
values) is made there; ``pick`` runs once per upstream try and stays cheap. Every strategy
skips endpoints outlier detection ejected (but uses them all when all are ejected) and, on a
retry, the endpoints the request already tried when another one is live. It never calls out:
no I/O, no clock but ``time.monotonic``.
"""

from __future__ import annotations

from gateway_core.manifests.upstream_policy import LoadBalancing
from gateway_core.messages import Balancer, Endpoint
from gateway_core.transport.balancing.affinity import CookieAffinity, affinity_token
from gateway_core.transport.balancing.hashing import ConsistentHash, stable_hash
from gateway_core.transport.balancing.live import LiveBalancer, in_rotation
from gateway_core.transport.balancing.rotation import RoundRobin, WeightedRandom
from gateway_core.transport.balancing.two_choices import LeastRequest, PeakEwma
from gateway_core.transport.endpoint_state import EndpointStates

__all__ = [
    "Balancers",
    "ConsistentHash",
    "CookieAffinity",
    "LeastRequest",
    "LiveBalancer",
    "PeakEwma",
    "RoundRobin",
    "WeightedRandom",
    "affinity_token",
    "in_rotation",
    "round_robin",
    "stable_hash",
]


class Balancers:
    """The balancer factory of one worker: makes each backend's balancer from its config.

    Every balancer it makes shares ``states`` (outstanding requests, latency, ejections per
    endpoint), which outlive route-table rebuilds.
    """

    def __init__(self, states: EndpointStates) -> None:
        self.states = states

    def __call__(self, endpoints: tuple[Endpoint, ...], config: LoadBalancing) -> Balancer:
        rotation, weights = in_rotation(endpoints, config.weights)
        states = self.states
        strategy = config.strategy
        balancer: Balancer
        if strategy == "random":
            balancer = WeightedRandom(rotation, weights, states)
        elif strategy == "least-request":
            balancer = LeastRequest(rotation, states)
        elif strategy == "ewma":
            balancer = PeakEwma(rotation, states)
        elif strategy == "hash":
            balancer = ConsistentHash(rotation, weights, states, hash_on=config.hash_on)
        else:
            balancer = RoundRobin(rotation, weights, states)
        if config.affinity is not None and rotation:
            balancer = CookieAffinity(balancer, rotation, config.affinity, states)
        return balancer


def round_robin(endpoints: tuple[Endpoint, ...], config: LoadBalancing | None = None) -> Balancer:
    """The simplest balancer factory (tests, tools): unweighted round robin whatever the config says."""
    return RoundRobin(endpoints)
