"""Route timeouts (``meta-native.io/timeouts``) and ``retries.timeout`` against slow real upstreams.

Every test runs on both transports: the default connection pool and the httpx-based one.
Time bounds are generous (a loaded 2-core machine); what they check is that the configured
limit, not a default 60 s one, ended the wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest

from gateway_core.proxy import ResponseAborted
from tests.fault_upstreams import FaultyUpstream, blackhole
from tests.pipeline_harness import Harness, api_objects

NO_OUTLIERS = {"enabled": False}
NO_RETRIES = {"attempts": 1}

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
        policies.setdefault("outlier_detection", NO_OUTLIERS)
        item = Harness(api_objects(ports, **policies), transport=request.param)
        made.append(item)
        return item

    yield make
    for item in made:
        await item.aclose()


async def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


def assert_gateway_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == code


# --- the transport's timeouts, per route ---------------------------------------------------------


async def test_connect_timeout(harness: Harnesses) -> None:
    with blackhole() as port:
        gateway = harness([port], timeouts={"connect": 0.3}, retries=NO_RETRIES)
        response, elapsed = await timed(gateway.client.get("/"))
    assert_gateway_error(response, 504, "upstream_timeout")
    assert 0.25 <= elapsed < 2.5


async def test_a_connect_timeout_is_a_connect_failure_and_is_retried(harness: Harnesses) -> None:
    with blackhole() as port:
        gateway = harness([port], timeouts={"connect": 0.2}, retries={"attempts": 3, "backoff_base": 0.001})
        response, elapsed = await timed(gateway.client.get("/"))
    assert_gateway_error(response, 504, "upstream_timeout")
    assert gateway.retries("connect-failure") == 2
    assert 0.55 <= elapsed < 3.0, "three connect timeouts in a row"


async def test_read_timeout_before_the_head(upstream: Upstreams, harness: Harnesses) -> None:
    slow = upstream("slow", "slow", delay=10)
    gateway = harness([slow.port], timeouts={"read": 0.3})
    response, elapsed = await timed(gateway.client.get("/"))
    assert_gateway_error(response, 504, "upstream_timeout")
    assert 0.25 <= elapsed < 2.5


async def test_read_timeout_between_body_bytes_cuts_the_connection(upstream: Upstreams, harness: Harnesses) -> None:
    """After the head went to the client, a silent upstream can only cut the response: no 504."""
    stalling = upstream("stalling", "stall")
    gateway = harness([stalling.port], timeouts={"read": 0.3})
    started = time.monotonic()
    with pytest.raises(ResponseAborted):
        await gateway.client.get("/download")
    assert time.monotonic() - started < 2.5
    assert stalling.count == 1


async def test_write_timeout_when_the_upstream_does_not_read(upstream: Upstreams, harness: Harnesses) -> None:
    deaf = upstream("deaf", "no-read")
    gateway = harness([deaf.port], timeouts={"write": 0.3, "read": 20})

    async def body() -> AsyncIterator[bytes]:
        for _ in range(256):
            yield b"x" * (256 * 1024)

    response, elapsed = await timed(gateway.client.post("/upload", content=body()))
    assert_gateway_error(response, 504, "upstream_timeout")
    assert elapsed < 5, "the write timeout, not the 20 s read timeout"


# --- per-try and overall limits ----------------------------------------------------------------


async def test_per_try_limits_one_try(upstream: Upstreams, harness: Harnesses) -> None:
    slow = upstream("slow", "slow", delay=10)
    gateway = harness([slow.port], timeouts={"per_try": 0.3}, retries=NO_RETRIES)
    response, elapsed = await timed(gateway.client.get("/"))
    assert_gateway_error(response, 504, "upstream_timeout")
    assert 0.25 <= elapsed < 2.5
    await asyncio.sleep(0.05)
    assert gateway.active_connections() == 0, "the cancelled try's connection is not left in the pool"
    assert set(gateway.outstanding().values()) == {0}


async def test_per_try_cuts_a_try_in_the_middle_of_its_upload(upstream: Upstreams, harness: Harnesses) -> None:
    """The try covers sending: a body still streaming when ``per_try`` passes ends the try cleanly."""
    sink = upstream("sink")
    gateway = harness([sink.port], timeouts={"per_try": 0.4}, retries=NO_RETRIES)

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 1024
            await asyncio.sleep(0.05)

    response, elapsed = await timed(gateway.client.post("/upload", content=trickle()))
    assert_gateway_error(response, 504, "upstream_timeout")
    assert 0.35 <= elapsed < 2.5
    await asyncio.sleep(0.05)
    assert gateway.active_connections() == 0
    assert set(gateway.outstanding().values()) == {0}
    assert sink.count == 0, "the upstream never got a complete request"


async def test_per_try_with_retries_on_timeout_reaches_a_fast_endpoint(upstream: Upstreams, harness: Harnesses) -> None:
    slow = upstream("slow", "slow", delay=10)
    fast = upstream("fast")
    gateway = harness([slow.port, fast.port], timeouts={"per_try": 0.3}, retries={"on": ["timeout"], "attempts": 2})
    durations = []
    for index in range(6):
        response, elapsed = await timed(gateway.client.get(f"/r{index}"))
        assert response.status_code == 200
        assert response.json()["upstream"] == "fast"
        durations.append(elapsed)
    assert max(durations) < 0.3 + 2.0
    assert gateway.retries("timeout") == slow.count >= 2
    await asyncio.sleep(0.05)
    assert gateway.active_connections() == 0


async def test_retries_timeout_bounds_all_tries_together(upstream: Upstreams, harness: Harnesses) -> None:
    slow = [upstream(f"slow-{index}", "slow", delay=10) for index in range(3)]
    gateway = harness(
        [server.port for server in slow],
        timeouts={"per_try": 0.4},
        retries={"on": ["timeout"], "attempts": 3, "timeout": 0.6},
    )
    response, elapsed = await timed(gateway.client.get("/"))
    assert_gateway_error(response, 504, "upstream_timeout")
    assert 0.55 <= elapsed < 0.6 + 2.0
    assert sum(server.count for server in slow) == 2, "the second try was cut at the overall limit"
