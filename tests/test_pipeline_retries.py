"""Retries and outlier detection in the request path, against real upstream servers.

Each test builds the route table from manifests (``tests/pipeline_harness.py``), sends
requests through the proxy app and a real transport (the pool, and the httpx one) to
:class:`FaultyUpstream` servers, and checks what every upstream received, what the client
got, and the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest

from gateway_core.proxy import ResponseAborted
from gateway_core.testing import free_port
from tests.fault_upstreams import FaultyUpstream
from tests.pipeline_harness import Harness, api_objects

NO_OUTLIERS = {"enabled": False}

Upstreams = Callable[..., FaultyUpstream]
Harnesses = Callable[..., Harness]


@pytest.fixture
def upstream() -> Iterator[Upstreams]:
    started: list[FaultyUpstream] = []

    def make(name: str, fault: str = "ok", **options: Any) -> FaultyUpstream:
        server = FaultyUpstream(name, fault, **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(params=["pool", "httpx"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harnesses]:
    made: list[Harness] = []

    def make(ports: Sequence[int], **policies: Any) -> Harness:
        item = Harness(api_objects(ports, **policies), transport=request.param)
        made.append(item)
        return item

    yield make
    for item in made:
        await item.aclose()


async def get_many(harness: Harness, count: int, method: str = "GET", **options: Any) -> list[httpx.Response]:
    return [await harness.client.request(method, f"/r{index}", **options) for index in range(count)]


# --- what is retried ---------------------------------------------------------------------------


async def test_get_moves_to_another_endpoint_after_a_connect_failure(upstream: Upstreams, harness: Harnesses) -> None:
    good = upstream("good")
    gateway = harness([free_port(), good.port], outlier_detection=NO_OUTLIERS)
    responses = await get_many(gateway, 20)
    assert [response.status_code for response in responses] == [200] * 20
    assert good.count == 20
    assert gateway.retries("connect-failure") >= 5  # each request that started on the dead one
    assert gateway.retries() == gateway.retries("connect-failure")


async def test_post_moves_after_a_connect_failure_with_its_body(upstream: Upstreams, harness: Harnesses) -> None:
    """Nothing was sent to the dead endpoint, so even a POST with a streamed body goes on."""
    good = upstream("good")
    gateway = harness([free_port(), good.port], outlier_detection=NO_OUTLIERS)
    bodies = [f"order {index} ".encode() * 500 for index in range(10)]
    for index, body in enumerate(bodies):
        response = await gateway.client.post(f"/orders/{index}", content=body)
        assert response.status_code == 200, response.text
    assert [seen.body for seen in good.seen] == bodies
    assert gateway.retries("connect-failure") >= 3


async def test_post_is_never_sent_twice(upstream: Upstreams, harness: Harnesses) -> None:
    cutter = upstream("cutter", "reset")
    good = upstream("good")
    gateway = harness([cutter.port, good.port], outlier_detection=NO_OUTLIERS)
    statuses = [(await gateway.client.post(f"/pay/{index}", content=b"x" * 100)).status_code for index in range(10)]
    assert sorted(set(statuses)) == [200, 502]
    assert cutter.count + good.count == 10, "each POST reached exactly one upstream once"
    assert statuses.count(502) == cutter.count
    assert gateway.retries() == 0


async def test_get_is_retried_after_a_reset(upstream: Upstreams, harness: Harnesses) -> None:
    cutter = upstream("cutter", "reset")
    good = upstream("good")
    gateway = harness([cutter.port, good.port], outlier_detection=NO_OUTLIERS)
    responses = await get_many(gateway, 10)
    assert [response.status_code for response in responses] == [200] * 10
    assert cutter.count >= 3
    assert gateway.retries("reset") == cutter.count
    assert sorted(good.paths()) == sorted(f"/r{index}" for index in range(10))


async def test_timeouts_are_not_retried_by_default(upstream: Upstreams, harness: Harnesses) -> None:
    slow = upstream("slow", "slow", delay=5)
    gateway = harness([slow.port, upstream("good").port], timeouts={"read": 0.3}, outlier_detection=NO_OUTLIERS)
    statuses = [response.status_code for response in await get_many(gateway, 4)]
    assert sorted(statuses) == [200, 200, 504, 504]
    assert gateway.retries() == 0


# --- statuses ------------------------------------------------------------------------------------


async def test_a_retried_status_goes_elsewhere_and_is_discarded_cleanly(
    upstream: Upstreams, harness: Harnesses
) -> None:
    failing = upstream("failing", "status", status=503)
    good = upstream("good")
    gateway = harness([failing.port, good.port], retries={"on": ["gateway-error"]}, outlier_detection=NO_OUTLIERS)
    responses = await get_many(gateway, 20)
    assert [response.json()["upstream"] for response in responses] == ["good"] * 20
    assert gateway.retries("503") == failing.count >= 5
    await asyncio.sleep(0.05)
    assert set(gateway.outstanding().values()) == {0}, "every discarded try ended"
    assert gateway.active_connections() == 0, "no connection is left busy by a discarded response"


async def test_the_client_gets_the_last_try_and_each_try_goes_to_another_endpoint(
    upstream: Upstreams, harness: Harnesses
) -> None:
    failing = [upstream(f"failing-{index}", "status", status=503) for index in range(3)]
    gateway = harness([server.port for server in failing], retries={"on": ["5xx"]}, outlier_detection=NO_OUTLIERS)
    for index in range(6):
        response = await gateway.client.get(f"/r{index}")
        assert response.status_code == 503
        assert response.json()["path"] == f"/r{index}", "the upstream's own answer, not the gateway's"
        seen_by = [server.name for server in failing if f"/r{index}" in server.paths()]
        assert len(seen_by) == 3, "three tries, on three different endpoints"
    assert gateway.retries("503") == 12


async def test_attempts_bound_the_tries(upstream: Upstreams, harness: Harnesses) -> None:
    failing = [upstream(f"failing-{index}", "status", status=502) for index in range(5)]
    gateway = harness(
        [server.port for server in failing],
        retries={"on": ["gateway-error"], "attempts": 2},
        outlier_detection=NO_OUTLIERS,
    )
    await get_many(gateway, 5)
    assert sum(server.count for server in failing) == 10


async def test_a_lone_endpoint_is_tried_again_after_a_backoff(upstream: Upstreams, harness: Harnesses) -> None:
    failing = upstream("failing", "status", status=504)
    gateway = harness(
        [failing.port],
        retries={"on": ["gateway-error"], "attempts": 4, "backoff_base": 0.01},
        outlier_detection=NO_OUTLIERS,
    )
    response = await gateway.client.get("/")
    assert response.status_code == 504
    assert failing.count == 4


async def test_a_post_answered_503_is_not_repeated(upstream: Upstreams, harness: Harnesses) -> None:
    failing = [upstream(f"failing-{index}", "status", status=503) for index in range(2)]
    gateway = harness(
        [server.port for server in failing], retries={"on": ["gateway-error"]}, outlier_detection=NO_OUTLIERS
    )
    assert (await gateway.client.post("/pay", content=b"{}")).status_code == 503
    assert sum(server.count for server in failing) == 1
    assert (await gateway.client.post("/pay")).status_code == 503  # not idempotent, even without a body
    assert sum(server.count for server in failing) == 2
    assert (await gateway.client.delete("/item")).status_code == 503  # idempotent: three tries
    assert sum(server.count for server in failing) == 5


async def test_retriable_statuses_are_the_listed_ones(upstream: Upstreams, harness: Harnesses) -> None:
    busy = upstream("busy", "status", status=409)
    good = upstream("good")
    gateway = harness(
        [busy.port, good.port],
        retries={"on": ["retriable-status"], "statuses": [409]},
        outlier_detection=NO_OUTLIERS,
    )
    responses = await get_many(gateway, 10)
    assert {response.status_code for response in responses} == {200}
    assert gateway.retries("409") == busy.count >= 3


# --- limits ------------------------------------------------------------------------------------


async def test_the_budget_caps_retries_in_flight(upstream: Upstreams, harness: Harnesses) -> None:
    """Six requests fail together; a budget of two retries lets only two of them try again."""
    failing = [upstream(f"slow-failing-{index}", "slow", status=503, delay=1.0) for index in range(2)]
    gateway = harness(
        [server.port for server in failing],
        retries={"on": ["gateway-error"], "attempts": 2, "budget_percent": 0, "min_retries": 2},
        outlier_detection=NO_OUTLIERS,
    )
    responses = await asyncio.gather(*(gateway.client.get(f"/r{index}") for index in range(6)))
    assert {response.status_code for response in responses} == {503}
    assert gateway.retries() == 2
    assert sum(server.count for server in failing) == 8
    assert len(gateway.pipeline.budgets) == 0, "the route's flight ends with its last request"


async def test_no_budget_no_retries(upstream: Upstreams, harness: Harnesses) -> None:
    gateway = harness(
        [free_port(), upstream("good").port],
        retries={"budget_percent": 0, "min_retries": 0},
        outlier_detection=NO_OUTLIERS,
    )
    statuses = [response.status_code for response in await get_many(gateway, 6)]
    assert sorted(statuses) == [200, 200, 200, 502, 502, 502]
    assert gateway.retries() == 0


async def test_a_response_failing_mid_body_is_not_retried(upstream: Upstreams, harness: Harnesses) -> None:
    """Once the head is accepted the client may already have part of the body: never again."""
    cut = upstream("cut", "cut")
    gateway = harness([cut.port], retries={"on": ["5xx", "reset", "timeout", "connect-failure"]})
    try:
        response = await gateway.client.get("/download")
    except ResponseAborted:  # cut after the head was relayed: the client connection is cut
        pass
    else:  # cut before the head was relayed (a loaded machine): 502
        assert response.status_code == 502
    assert cut.count == 1
    assert gateway.retries() == 0


# --- outlier detection ---------------------------------------------------------------------------


async def test_an_endpoint_failing_in_a_row_is_ejected_then_comes_back(upstream: Upstreams, harness: Harnesses) -> None:
    stormy = upstream("stormy", "status", status=503)
    others = [upstream(f"good-{index}") for index in range(2)]
    gateway = harness(
        [stormy.port, *(server.port for server in others)],
        retries={"on": ["gateway-error"]},
        outlier_detection={"consecutive_failures": 3, "base_ejection_time": 0.5},
    )
    responses = await get_many(gateway, 30)
    assert {response.status_code for response in responses} == {200}
    assert stormy.count == 3, "ejected at its third failure, then skipped"
    assert gateway.ejections() == 1
    stormy.fault = "ok"
    await asyncio.sleep(0.6)
    await get_many(gateway, 30)
    assert 3 + 5 <= stormy.count <= 3 + 15, "back in rotation once the ejection time passed"


async def test_outstanding_tries_return_to_zero_whatever_happened(upstream: Upstreams, harness: Harnesses) -> None:
    servers = [
        upstream("good"),
        upstream("failing", "status", status=502),
        upstream("cutter", "reset"),
        upstream("cut", "cut"),
    ]
    gateway = harness(
        [free_port(), *(server.port for server in servers)],
        retries={"on": ["gateway-error"], "attempts": 3},
        outlier_detection=NO_OUTLIERS,
    )
    for index in range(25):
        with contextlib.suppress(ResponseAborted):
            await gateway.client.get(f"/r{index}")
    await asyncio.sleep(0.05)
    assert set(gateway.outstanding().values()) == {0}
    assert gateway.active_connections() == 0
