"""rate-limit over a real ``redis-server``: shared counters, a dead or hung Redis, credentials."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    InProcessGateway,
    RecordingUpstream,
    RedisServer,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    wait_until,
    write_manifests,
)


def limited(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """An Ingress for host ``<name>.test`` binding rate-limit with ``config``."""
    return ingress(
        name, rules=[(f"{name}.test", [path("/", "api")])], annotations=plugin_annotations({"rate-limit": config})
    )


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as session:
        yield session


def get(client: httpx.Client, base: str, host: str) -> httpx.Response:
    return client.get(f"{base}/x", headers={"Host": host})


async def burst(targets: list[str], host: str, count: int) -> list[int]:
    """``count`` requests at once, spread over the gateways at ``targets``."""
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=count)) as session:
        replies = await asyncio.gather(
            *(session.get(f"{targets[index % len(targets)]}/x", headers={"Host": host}) for index in range(count))
        )
    return [reply.status_code for reply in replies]


@pytest.mark.e2e
def test_workers_and_processes_share_one_limit_and_a_dead_redis_is_counted_and_logged_once(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
    redis_server: RedisServer,
    client: httpx.Client,
) -> None:
    backend = upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            limited("api", {"limit": "10 per 30 seconds", "storage": redis_server.url}),
        ],
    )
    two_workers = gateway_process(manifests_dir, workers=2, wait_ready=False)
    one_worker = gateway_process(manifests_dir, wait_ready=False)
    two_workers.wait_ready()
    one_worker.wait_ready()

    codes = asyncio.run(burst([two_workers.url, one_worker.url], "api.test", 40))
    assert (codes.count(200), codes.count(429)) == (10, 30)
    assert len(backend.requests) == 10

    redis_server.stop()
    started = time.monotonic()
    assert [get(client, two_workers.url, "api.test").status_code for _ in range(20)] == [200] * 20  # fail open
    assert time.monotonic() - started < 5
    metrics = client.get(f"{two_workers.admin_url}/metrics").text
    assert 'gateway_rate_limit_storage_errors_total{plugin="rate-limit"} 20.0' in metrics
    failures = [line for line in two_workers.log().splitlines() if "rate-limit storage" in line]
    assert 1 <= len(failures) <= 2, failures  # at most one line per worker, not one per request
    assert "Traceback" not in two_workers.log()


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
def test_two_gateways_on_one_redis_count_together(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
    redis_server: RedisServer,
    client: httpx.Client,
    strategy: str,
) -> None:
    backend = upstream("api")
    config = {"limit": "5/minute", "strategy": strategy, "storage": redis_server.url}
    write_manifests(manifests_dir, [*routed_service("api", backend.port), limited("api", config)])
    first, second = in_process_gateway(manifests=manifests_dir), in_process_gateway(manifests=manifests_dir)
    # Sliding windows are aligned to the clock: keep the burst inside one minute.
    wait_until(lambda: time.time() % 60 < 58, timeout=3, message="not the last seconds of a minute")
    codes = [get(client, gateway.url, "api.test").status_code for _ in range(4) for gateway in (first, second)]
    assert codes == [200] * 5 + [429] * 3


def test_a_dead_redis_fails_open_or_closed_as_configured_and_limiting_resumes(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
    redis_server: RedisServer,
    client: httpx.Client,
) -> None:
    backend = upstream("api")
    opened = {"limit": "2/minute", "storage": redis_server.url}
    closed = {**opened, "on_storage_error": "deny"}
    write_manifests(
        manifests_dir, [*routed_service("api", backend.port), limited("open", opened), limited("closed", closed)]
    )
    gateway = in_process_gateway(manifests=manifests_dir)
    assert [get(client, gateway.url, "open.test").status_code for _ in range(3)] == [200, 200, 429]

    redis_server.stop()
    started = time.monotonic()
    assert [get(client, gateway.url, "open.test").status_code for _ in range(3)] == [200, 200, 200]
    refused = get(client, gateway.url, "closed.test")
    assert time.monotonic() - started < 2
    assert refused.status_code == 503
    assert refused.json()["error"] == "rate_limit_unavailable"
    assert refused.headers["retry-after"] == "1"

    redis_server.start()  # an empty Redis on the same port: counting starts over
    wait_until(lambda: get(client, gateway.url, "closed.test").status_code == 200, timeout=5, message="Redis back")
    assert [get(client, gateway.url, "closed.test").status_code for _ in range(2)] == [200, 429]


def test_a_hung_redis_costs_a_request_at_most_the_storage_timeout(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
    redis_server: RedisServer,
    client: httpx.Client,
) -> None:
    backend = upstream("api")
    config = {"limit": "100/minute", "storage": redis_server.url, "storage_timeout": 0.2}
    write_manifests(manifests_dir, [*routed_service("api", backend.port), limited("api", config)])
    gateway = in_process_gateway(manifests=manifests_dir)
    assert get(client, gateway.url, "api.test").status_code == 200
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)  # connections stay open, nothing answers
    try:
        timings = []
        for _ in range(3):
            started = time.monotonic()
            assert get(client, gateway.url, "api.test").status_code == 200
            timings.append(time.monotonic() - started)
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert timings[0] < 1.5, timings  # one storage_timeout (0.2 s) and the proxy's own work
    assert max(timings[1:]) < 0.15, timings  # then the storage is skipped for a second


def test_the_redis_password_comes_from_a_secret(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
    redis_server: RedisServer,
    client: httpx.Client,
) -> None:
    assert redis_server.command("CONFIG", "SET", "requirepass", "s3cret").startswith(b"+OK")
    backend = upstream("api")
    base = {"limit": "2/minute", "storage": redis_server.url, "on_storage_error": "deny"}
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            secret("redis-auth", {"password": "s3cret"}),
            limited("authed", {**base, "storage_secret": "redis-auth"}),
            limited("anonymous", base),
            limited("missing", {**base, "storage_secret": "no-such-secret"}),
        ],
    )
    gateway = in_process_gateway(manifests=manifests_dir)
    assert [get(client, gateway.url, "authed.test").status_code for _ in range(3)] == [200, 200, 429]
    assert get(client, gateway.url, "anonymous.test").status_code == 503  # NOAUTH: a failing storage
    missing = get(client, gateway.url, "missing.test")
    assert (missing.status_code, missing.json()["error"]) == (503, "route_unavailable")
    reasons = json.dumps(client.get(f"{gateway.admin_url}/routes").json()["rejected"])
    assert "no-such-secret" in reasons
    assert "s3cret" not in reasons


def test_strategies_never_share_redis_keys_even_with_the_same_limit_and_scope(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
    redis_server: RedisServer,
    client: httpx.Client,
) -> None:
    backend = upstream("api")
    shared = {"limit": "2/minute", "scope": "global", "storage": redis_server.url, "on_storage_error": "deny"}
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            limited("fixed", {**shared, "strategy": "fixed-window"}),
            limited("moving", {**shared, "strategy": "moving-window"}),
        ],
    )
    gateway = in_process_gateway(manifests=manifests_dir)
    # limits names both counters alike, but one is a Redis string and the other a list.
    for host in ("fixed.test", "moving.test"):
        assert [get(client, gateway.url, host).status_code for _ in range(3)] == [200, 200, 429]
