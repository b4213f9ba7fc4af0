"""body-limit through a real in-process gateway and a real recording upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from body_limit_support import RawClient, chunk, chunked_head, limited_ingress

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    write_manifests,
)

LIMIT = 1000


def pieces(total: int, size: int = 250) -> Iterator[bytes]:
    """A body of ``total`` bytes as an iterator, so httpx sends it chunked."""
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.fixture
def gateway(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> tuple[InProcessGateway, RecordingUpstream]:
    backend = upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            limited_ingress("limited", "limited.test", "api", {"max_size": LIMIT}),
            limited_ingress("unlimited", "unlimited.test", "api", {"max_size": 0}),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    return in_process_gateway(manifests=manifests_dir), backend


def post(gw: InProcessGateway, host: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.post(f"{gw.url}/upload", content=content, headers={"Host": host})


def test_a_content_length_over_the_limit_gets_413_and_the_upstream_is_never_contacted(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    response = post(gw, "limited.test", b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": "content_too_large",
        "message": f"the request body is larger than this route's limit of {LIMIT} bytes",
    }
    assert backend.requests == []


def test_a_body_of_exactly_the_limit_passes_whole(gateway: tuple[InProcessGateway, RecordingUpstream]) -> None:
    gw, backend = gateway
    assert post(gw, "limited.test", b"y" * LIMIT).status_code == 200
    assert backend.requests[-1].body == b"y" * LIMIT
    assert backend.requests[-1].headers["content-length"] == str(LIMIT)


def test_a_chunked_body_under_the_limit_passes_whole(gateway: tuple[InProcessGateway, RecordingUpstream]) -> None:
    gw, backend = gateway
    response = post(gw, "limited.test", pieces(LIMIT))
    assert response.status_code == 200
    assert backend.requests[-1].headers["transfer-encoding"] == "chunked"
    assert backend.requests[-1].body == b"x" * LIMIT


def test_a_chunked_body_over_the_limit_gets_413_and_the_upstream_records_no_request(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    response = post(gw, "limited.test", pieces(LIMIT + 1))
    assert (response.status_code, response.json()["error"]) == (413, "content_too_large")
    assert backend.requests == []  # it was cut: the recording upstream never saw it complete
    assert post(gw, "limited.test", b"after").status_code == 200  # the gateway and upstream are fine


def test_requests_without_a_body_pass(gateway: tuple[InProcessGateway, RecordingUpstream]) -> None:
    gw, backend = gateway
    assert httpx.get(f"{gw.url}/x", headers={"Host": "limited.test"}).status_code == 200
    assert post(gw, "limited.test", b"").status_code == 200
    assert len(backend.requests) == 2


@pytest.mark.parametrize("host", ["unlimited.test", "open.test"])
def test_zero_turns_the_limit_off_and_other_routes_are_not_limited(
    gateway: tuple[InProcessGateway, RecordingUpstream], host: str
) -> None:
    gw, backend = gateway
    big = 256 * 1024
    assert post(gw, host, b"z" * big).status_code == 200
    assert post(gw, host, pieces(big, 16 * 1024)).status_code == 200
    assert [len(seen.body) for seen in backend.requests] == [big, big]


def test_a_huge_declared_length_is_refused_before_any_body_is_sent(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    client = RawClient(gw.url)
    try:
        # Only the head: the 413 cannot have waited for the body.
        client.send(b"POST /upload HTTP/1.1\r\nHost: limited.test\r\nContent-Length: 10737418240\r\n\r\n")
        status, _, body = client.response()
        assert (status, body.startswith(b'{"error":"content_too_large"')) == (413, True)
        assert client.closed_by_peer()  # the unread body is never taken for the next request
    finally:
        client.close()
    assert backend.requests == []


def test_expect_100_continue_over_the_limit_gets_413_and_no_continue(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    client = RawClient(gw.url)
    try:
        client.send(
            b"POST /upload HTTP/1.1\r\nHost: limited.test\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        status, _, _ = client.response()  # the first response: 413, not 100 Continue
        assert status == 413
    finally:
        client.close()
    assert backend.requests == []


def test_many_tiny_chunks_are_counted_too(gateway: tuple[InProcessGateway, RecordingUpstream]) -> None:
    gw, backend = gateway
    client = RawClient(gw.url)
    try:
        client.send(chunked_head("limited.test") + chunk(b"a") * (LIMIT + 1) + b"0\r\n\r\n")
        status, _, _ = client.response()
        assert status == 413
    finally:
        client.close()
    assert backend.requests == []


def test_a_cut_body_is_not_an_upstream_failure_for_the_circuit_breaker(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    backend = upstream("api")
    annotations = plugin_annotations({"body-limit": {"max_size": LIMIT}, "circuit-breaker": {"fail_max": 1}})
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            ingress("guarded", rules=[(None, [path("/", "api")])], annotations=annotations),
        ],
    )
    gw = in_process_gateway(manifests=manifests_dir)
    for _ in range(2):
        assert httpx.post(f"{gw.url}/upload", content=pieces(LIMIT * 2)).status_code == 413
    assert httpx.post(f"{gw.url}/upload", content=b"fine").status_code == 200  # the breaker is still closed
    assert len(backend.requests) == 1
