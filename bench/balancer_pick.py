"""Micro benchmark: the cost of one ``pick()`` per load-balancing strategy.

Builds each strategy through the gateway's own factory (``Balancers``) over --endpoints
endpoints and times ``pick`` with ``timeit`` (best of --repeat runs of --number picks), in a
steady state: nothing ejected, the pipeline's bookkeeping (outstanding, latency) simulated
between picks only where the strategy reads it. Also times the same picks while one endpoint
is ejected (the live list then skips it) and a retry's pick (one endpoint to avoid).

    python bench/balancer_pick.py
    python bench/balancer_pick.py --endpoints 3 10 100 --number 200000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

from gateway_core.manifests.upstream_policy import LoadBalancing
from gateway_core.messages import Endpoint, Headers, RequestContext, UpstreamRequest
from gateway_core.transport.balancing import Balancers, affinity_token
from gateway_core.transport.endpoint_state import EndpointStates

CONFIGS: dict[str, dict[str, Any]] = {
    "round-robin": {},
    "round-robin weighted": {"weights": {"10.0.0.1": 3, "10.0.0.2": 2}},
    "random": {"strategy": "random"},
    "random weighted": {"strategy": "random", "weights": {"10.0.0.1": 3, "10.0.0.2": 2}},
    "least-request": {"strategy": "least-request"},
    "ewma": {"strategy": "ewma"},
    "hash client_ip": {"strategy": "hash"},
    "hash header": {"strategy": "hash", "hash_on": "header:x-user"},
    "hash cookie": {"strategy": "hash", "hash_on": "cookie:session"},
    "round-robin + affinity (hit)": {"affinity": {}},
    "round-robin + affinity (miss)": {"affinity": {"name": "other"}},
}


def context(endpoint: Endpoint) -> RequestContext:
    """A request as the proxy makes it: a few headers, a cookie naming ``endpoint``."""
    headers = Headers(
        [
            (b"host", b"app.example"),
            (b"user-agent", b"bench/1.0"),
            (b"accept", b"*/*"),
            (b"x-user", b"user-4711"),
            (b"cookie", b"theme=dark; session=abc123; mng-affinity=" + affinity_token(endpoint).encode()),
        ]
    )
    return RequestContext(
        scope={},
        method="GET",
        host="app.example",
        path="/api/items",
        scheme="http",
        client_ip="192.0.2.10",
        peer_ip="192.0.2.10",
        route=None,
        request=UpstreamRequest("GET", b"/api/items", headers),
    )


def measure(count: int, number: int, repeat: int) -> list[tuple[str, float, float, float]]:
    """(name, ns per pick, ns per pick with one endpoint ejected, ns per retry pick) per strategy."""
    endpoints = tuple(Endpoint(f"10.0.0.{index + 1}", 8080) for index in range(count))
    rows = []
    for name, values in CONFIGS.items():
        states = EndpointStates()
        for endpoint in endpoints:  # as after some traffic: every endpoint measured
            state = states.get(endpoint)
            state.observe_latency(0.002 + random.random() / 1000)
            state.outstanding = random.randrange(4)
        balancer = Balancers(states)(endpoints, LoadBalancing.model_validate(values))
        first = partial(balancer.pick, context(endpoints[0]))
        retry = partial(first, (endpoints[0],))
        steady = _best(first, number, repeat)
        ejected = states.get(endpoints[-1])
        ejected.ejected_until = time.monotonic() + 3600
        states.changed()
        with_ejection = _best(first, number, repeat)
        ejected.ejected_until = 0.0
        states.changed()
        rows.append((name, steady, with_ejection, _best(retry, number, repeat)))
    return rows


def _best(call: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, nargs="+", default=[3, 10, 100], help="endpoint counts")
    parser.add_argument("--number", type=int, default=100_000, help="picks per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported")
    args = parser.parse_args()
    baseline = _best(lambda: None, args.number, args.repeat)
    print(f"pick() cost in ns (best of {args.repeat} x {args.number}; an empty call costs {baseline:.0f} ns)")
    for count in args.endpoints:
        print(f"\n{count} endpoints")
        print(f"{'strategy':<31} {'steady':>7} {'1 ejected':>9} {'retry':>7}")
        for name, steady, with_ejection, retry in measure(count, args.number, args.repeat):
            print(f"{name:<31} {steady:>7.0f} {with_ejection:>9.0f} {retry:>7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
