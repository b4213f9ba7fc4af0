"""Round robin, random, least request and peak EWMA: distributions over many picks, weights,
ejections skipped (never to nothing), retries sent elsewhere, and the live-list cache."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest

from gateway_core.manifests.upstream_policy import LoadBalancing
from gateway_core.messages import Balancer, Endpoint, Headers, RequestContext, UpstreamRequest
from gateway_core.transport.balancing import (
    Balancers,
    ConsistentHash,
    CookieAffinity,
    LeastRequest,
    PeakEwma,
    RoundRobin,
    WeightedRandom,
    round_robin,
)
from gateway_core.transport.balancing.rotation import MAX_SCHEDULE, SCHEDULE_WORK, smooth_schedule
from gateway_core.transport.endpoint_state import EndpointState, EndpointStates

A, B, C = (Endpoint("10.0.0.1", 8080), Endpoint("10.0.0.2", 8080), Endpoint("10.0.0.3", 8080))
ABC = (A, B, C)
STRATEGIES = ["round-robin", "random", "least-request", "ewma", "hash"]


def make(states: EndpointStates, endpoints: tuple[Endpoint, ...] = ABC, **config: Any) -> Balancer:
    return Balancers(states)(endpoints, LoadBalancing.model_validate(config))


def request(**headers: str) -> RequestContext:
    raw = Headers()
    for name, value in headers.items():
        raw.add(name.replace("_", "-"), value)
    return RequestContext(
        scope={},
        method="GET",
        host="app.test",
        path="/",
        scheme="http",
        client_ip="192.0.2.7",
        peer_ip="192.0.2.7",
        route=None,
        request=UpstreamRequest("GET", b"/", raw),
    )


def picks(balancer: Balancer, count: int, ctx: RequestContext | None = None, **options: Any) -> Counter[Endpoint]:
    chosen = Counter[Endpoint]()
    for _ in range(count):
        endpoint = balancer.pick(ctx, **options)
        assert endpoint is not None
        chosen[endpoint] += 1
    return chosen


def eject(states: EndpointStates, endpoint: Endpoint, seconds: float = 3600.0) -> None:
    states.get(endpoint).ejected_until = time.monotonic() + seconds
    states.changed()


# --- factory ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        ({}, RoundRobin),
        ({"strategy": "random"}, WeightedRandom),
        ({"strategy": "least-request"}, LeastRequest),
        ({"strategy": "ewma"}, PeakEwma),
        ({"strategy": "hash", "hash_on": "header:x-user"}, ConsistentHash),
        ({"strategy": "ewma", "affinity": {}}, CookieAffinity),
    ],
)
def test_the_factory_makes_the_configured_strategy(config: dict[str, Any], kind: type) -> None:
    assert isinstance(make(EndpointStates(), **config), kind)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_backend_without_endpoints_picks_none(strategy: str) -> None:
    assert make(EndpointStates(), (), strategy=strategy).pick(request()) is None
    assert round_robin(()).pick(None) is None


# --- round robin ----------------------------------------------------------------------------------


def test_round_robin_cycles_through_every_endpoint_evenly() -> None:
    balancer = make(EndpointStates())
    sequence = [balancer.pick(None) for _ in range(3000)]
    assert Counter(sequence) == {A: 1000, B: 1000, C: 1000}
    assert all(len(set(sequence[index : index + 3])) == 3 for index in range(0, 2997))


def test_round_robin_starts_at_a_random_endpoint_in_each_worker() -> None:
    firsts = {make(EndpointStates()).pick(None) for _ in range(60)}
    assert firsts == set(ABC)


def test_smooth_weighted_round_robin_spreads_the_light_endpoints() -> None:
    balancer = make(EndpointStates(), weights={"10.0.0.1": 5})
    sequence = [balancer.pick(None) for _ in range(7000)]
    assert Counter(sequence) == {A: 5000, B: 1000, C: 1000}
    # nginx's sequence for 5, 1, 1 is a a b a c a a: B and C never next to each other, each every 7th.
    for light in (B, C):
        turns = [index for index, endpoint in enumerate(sequence) if endpoint == light]
        assert {later - earlier for earlier, later in itertools.pairwise(turns)} == {7}
    assert all({sequence[index], sequence[index + 1]} != {B, C} for index in range(6999))


def test_the_schedule_is_nginx_s() -> None:
    assert smooth_schedule(ABC, [5, 1, 1]) == [A, A, B, A, C, A, A]
    assert smooth_schedule(ABC, [2, 2, 2]) == [A, B, C]
    assert smooth_schedule(ABC, [4, 2, 0]) == [A, B, A]  # divided by the gcd; weight 0 never


def test_a_huge_weighted_schedule_is_scaled_down_keeping_the_proportions() -> None:
    endpoints = tuple(Endpoint(f"10.0.{index // 250}.{index % 250}", 80) for index in range(400))
    weights = [1000 if index % 2 else 999 for index in range(400)]
    schedule = smooth_schedule(endpoints, weights)
    assert len(schedule) * len(endpoints) <= SCHEDULE_WORK + len(endpoints) ** 2
    assert set(schedule) == set(endpoints)
    few = smooth_schedule(ABC, [1000, 999, 7])  # 2006 turns: short enough to keep exactly
    assert Counter(few) == {A: 1000, B: 999, C: 7}
    many = tuple(Endpoint(f"10.1.0.{index}", 80) for index in range(20))
    scaled = Counter(smooth_schedule(many, [1000] + [500] * 19))  # 10,500 turns: scaled to about 10,000
    assert len(scaled) == 20
    assert sum(scaled.values()) <= MAX_SCHEDULE + 20
    assert abs(scaled[many[0]] / scaled[many[1]] - 2) < 0.01


def test_weights_are_looked_up_by_address_then_by_ip() -> None:
    other_port = Endpoint("10.0.0.1", 9090)
    balancer = make(EndpointStates(), (A, other_port, B), weights={"10.0.0.1": 0, "10.0.0.1:9090": 2})
    assert Counter(picks(balancer, 300)) == {other_port: 200, B: 100}


def test_weight_zero_takes_an_endpoint_out_and_all_zero_means_all_equal() -> None:
    assert set(picks(make(EndpointStates(), weights={"10.0.0.2": 0}), 100)) == {A, C}
    everyone_out = {"10.0.0.1": 0, "10.0.0.2": 0, "10.0.0.3": 0}
    assert picks(make(EndpointStates(), weights=everyone_out), 300) == {A: 100, B: 100, C: 100}


# --- random ---------------------------------------------------------------------------------------


def test_random_is_uniform_and_weighted() -> None:
    uniform = picks(make(EndpointStates(), strategy="random"), 30_000)
    assert all(abs(count / 30_000 - 1 / 3) < 0.02 for count in uniform.values()), uniform
    weighted = picks(make(EndpointStates(), strategy="random", weights={"10.0.0.1": 6, "10.0.0.2": 3}), 30_000)
    for endpoint, share in ((A, 0.6), (B, 0.3), (C, 0.1)):
        assert abs(weighted[endpoint] / 30_000 - share) < 0.02, weighted


# --- least request and peak EWMA ------------------------------------------------------------------


def test_least_request_prefers_the_endpoint_with_fewer_requests_in_flight() -> None:
    states = EndpointStates()
    for endpoint, outstanding in zip(ABC, (0, 1, 2), strict=True):
        states.get(endpoint).outstanding = outstanding
    shares = picks(make(states, strategy="least-request"), 9000)
    # Two random of three: A wins both pairs it is in (2/3), B the pair (B, C), C never.
    assert abs(shares[A] / 9000 - 2 / 3) < 0.03, shares
    assert abs(shares[B] / 9000 - 1 / 3) < 0.03, shares
    assert shares[C] == 0


def test_least_request_breaks_ties_at_random() -> None:
    shares = picks(make(EndpointStates(), (A, B), strategy="least-request"), 4000)
    assert abs(shares[A] / 4000 - 0.5) < 0.05, shares


def test_least_request_balances_a_simulated_slow_endpoint_away() -> None:
    """Endpoint A answers ten times slower: it ends up with far fewer requests than round robin gives it."""
    states = EndpointStates()
    balancer = make(states, strategy="least-request")
    service_ticks = {A: 10, B: 1, C: 1}
    in_flight: list[tuple[int, Endpoint]] = []
    served = Counter[Endpoint]()
    for tick in range(3000):
        for done in [item for item in in_flight if item[0] <= tick]:
            in_flight.remove(done)
            states.get(done[1]).outstanding -= 1
        for _ in range(2):  # two new requests per tick
            endpoint = balancer.pick(None)
            assert endpoint is not None
            served[endpoint] += 1
            states.get(endpoint).outstanding += 1
            in_flight.append((tick + service_ticks[endpoint], endpoint))
    assert served[A] / 6000 < 0.15, served


def test_ewma_prefers_the_faster_endpoint() -> None:
    states = EndpointStates()
    for endpoint, latency in zip(ABC, (0.2, 0.01, 0.01), strict=True):
        states.get(endpoint).observe_latency(latency)
    shares = picks(make(states, strategy="ewma"), 3000)
    assert shares[A] == 0, shares
    assert min(shares[B], shares[C]) > 500, shares


def test_ewma_weighs_latency_by_requests_in_flight() -> None:
    states = EndpointStates()
    states.get(A).observe_latency(0.01)
    states.get(B).observe_latency(0.02)
    states.get(A).outstanding = 3  # cost 0.04 against B's 0.02
    assert set(picks(make(states, (A, B), strategy="ewma"), 200)) == {B}


def test_ewma_tries_a_new_endpoint_once_but_does_not_flood_it() -> None:
    states = EndpointStates()
    states.get(A).observe_latency(0.01)
    states.get(B).observe_latency(0.01)
    balancer = make(states, strategy="ewma")
    assert C in picks(balancer, 50), "an idle unmeasured endpoint costs nothing: it is tried"
    states.get(C).outstanding = 1  # its first try is out, no answer yet
    assert C not in picks(balancer, 500)


def test_ewma_does_not_take_an_endpoint_that_only_failed_for_a_free_one() -> None:
    """Connection failures leave no latency sample: without a penalty a dead endpoint would look free."""
    states = EndpointStates()
    states.get(A).observe_latency(0.01)
    states.get(B).observe_latency(0.01)
    states.get(C).failures = 2
    assert C not in picks(make(states, strategy="ewma"), 500)


def test_an_ewma_latency_decays_while_no_sample_arrives_so_a_slow_endpoint_is_probed_again() -> None:
    states = EndpointStates()
    states.get(A).observe_latency(0.5, now=time.monotonic() - 120.0)  # slow, two minutes ago
    states.get(B).observe_latency(0.01)
    assert A in picks(make(states, (A, B), strategy="ewma"), 50)


# --- ejections and retries, every strategy ----------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ejected_endpoints_are_skipped(strategy: str) -> None:
    states = EndpointStates()
    balancer = make(states, strategy=strategy)
    picks(balancer, 10, request())
    eject(states, B)
    contexts = [request(), None]
    assert all(balancer.pick(ctx) in (A, C) for ctx in contexts for _ in range(300))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_when_every_endpoint_is_ejected_they_are_all_used(strategy: str) -> None:
    states = EndpointStates()
    for endpoint in ABC:
        eject(states, endpoint)
    assert set(picks(make(states, strategy=strategy), 300)) == set(ABC)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_ejected_endpoint_returns_when_its_time_is_up(strategy: str) -> None:
    states = EndpointStates()
    balancer = make(states, strategy=strategy)
    eject(states, A, seconds=0.2)
    assert A not in picks(balancer, 100)
    time.sleep(0.3)  # no generation bump: the balancer notices the expiry by itself
    assert A in picks(balancer, 300)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_retry_avoids_the_endpoints_already_tried(strategy: str) -> None:
    balancer = make(EndpointStates(), strategy=strategy)
    ctx = request()
    chosen = set(picks(balancer, 300, ctx, avoid=(A,)))
    assert A not in chosen
    assert chosen == {B, C} or strategy == "hash"  # hash: the key's next owner along the ring
    assert set(picks(balancer, 100, ctx, avoid=(A, B))) == {C}
    assert picks(balancer, 30, ctx, avoid=ABC), "every endpoint tried: one of them again, never none"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_retry_skips_both_tried_and_ejected_endpoints(strategy: str) -> None:
    states = EndpointStates()
    eject(states, C)
    assert set(picks(make(states, strategy=strategy), 200, request(), avoid=(A,))) == {B}


def test_the_live_list_is_recomputed_only_when_an_ejection_changes() -> None:
    class CountingStates(EndpointStates):
        lookups = 0

        def of(self, endpoints: Iterable[Endpoint]) -> tuple[EndpointState, ...]:
            CountingStates.lookups += 1
            return super().of(endpoints)

    states = CountingStates()
    balancer = make(states)
    picks(balancer, 1000)
    assert CountingStates.lookups == 1
    eject(states, A)
    picks(balancer, 1000)
    assert CountingStates.lookups == 2
