"""A chunked body crossing the limit mid-stream: what the client gets, what the upstream sees.

The upstream here records raw bytes per connection, so the tests can assert that a cut
request is never complete: the terminating zero-length chunk never arrives, the connection
is aborted, and no more than the limit was forwarded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from body_limit_support import (
    ANSWER,
    Mode,
    RawClient,
    StreamingUpstream,
    UpstreamConnection,
    chunk,
    chunked_head,
    limited_ingress,
)

from gateway_core.testing import InProcessGateway, routed_service, wait_until, write_manifests

LIMIT = 1000
FIRST = b"a" * 600
SECOND = b"b" * 600


@pytest.fixture
def streaming_upstream(request: pytest.FixtureRequest) -> Iterator[StreamingUpstream]:
    mode: Mode = request.param
    server = StreamingUpstream(mode).start()
    yield server
    server.stop()


def serve(
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
    backend: StreamingUpstream,
    transport: str = "pool",
) -> InProcessGateway:
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            limited_ingress("limited", "limited.test", "api", {"max_size": LIMIT}),
        ],
    )
    return in_process_gateway(manifests=manifests_dir, overrides={"gateway": {"transport": transport}})


def only_connection(backend: StreamingUpstream) -> UpstreamConnection:
    wait_until(lambda: len(backend.connections) == 1, timeout=5)
    return backend.connections[0]


def assert_cut_short(connection: UpstreamConnection) -> None:
    """The upstream saw the connection end with the request incomplete, never past the limit."""
    wait_until(lambda: connection.ended, timeout=5)
    assert not connection.complete
    assert b"\r\n0\r\n\r\n" not in connection.body
    assert len(connection.payload) <= LIMIT


@pytest.mark.parametrize("transport", ["pool", "httpx"])
@pytest.mark.parametrize("streaming_upstream", ["reading"], indirect=True)
def test_a_normal_upstream_gets_the_first_chunk_then_an_aborted_connection_and_the_client_413(
    streaming_upstream: StreamingUpstream,
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
    transport: str,
) -> None:
    gw = serve(manifests_dir, in_process_gateway, streaming_upstream, transport)
    client = RawClient(gw.url)
    try:
        client.send(chunked_head("limited.test") + chunk(FIRST))
        connection = only_connection(streaming_upstream)
        wait_until(lambda: connection.payload == FIRST, timeout=5)  # forwarded as it came
        client.send(chunk(SECOND))
        status, headers, body = client.response()
        assert (status, headers["content-type"]) == (413, "application/json")
        assert body.startswith(b'{"error":"content_too_large"')
        assert client.closed_by_peer()
    finally:
        client.close()
    assert_cut_short(connection)
    assert connection.payload == FIRST


@pytest.mark.parametrize("streaming_upstream", ["stalled"], indirect=True)
def test_a_slow_upstream_that_has_not_answered_sees_an_incomplete_request_and_the_client_413(
    streaming_upstream: StreamingUpstream,
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    gw = serve(manifests_dir, in_process_gateway, streaming_upstream)
    client = RawClient(gw.url)
    try:
        client.send(chunked_head("limited.test") + chunk(FIRST))
        connection = only_connection(streaming_upstream)
        wait_until(lambda: connection.head.startswith(b"POST /upload"), timeout=5)
        client.send(chunk(SECOND) + b"0\r\n\r\n")
        status, _, body = client.response()
        assert status == 413
        assert b"content_too_large" in body
    finally:
        client.close()
    streaming_upstream.release.set()  # now it reads what reached it: the cut request
    assert_cut_short(connection)


@pytest.mark.parametrize("streaming_upstream", ["early"], indirect=True)
def test_an_upstream_that_answered_first_keeps_its_answer_and_gets_nothing_past_the_limit(
    streaming_upstream: StreamingUpstream,
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    gw = serve(manifests_dir, in_process_gateway, streaming_upstream)
    client = RawClient(gw.url)
    try:
        client.send(chunked_head("limited.test") + chunk(FIRST))
        status, _, body = client.response()  # the upstream answered before the limit was reached
        assert (status, body) == (200, ANSWER)
        with contextlib.suppress(OSError):  # the gateway may already have closed the connection
            client.send(chunk(SECOND) + b"0\r\n\r\n")
    finally:
        client.close()
    connection = only_connection(streaming_upstream)
    assert_cut_short(connection)


@pytest.mark.parametrize("streaming_upstream", ["reading"], indirect=True)
def test_one_huge_declared_chunk_is_refused_without_waiting_for_it(
    streaming_upstream: StreamingUpstream,
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    gw = serve(manifests_dir, in_process_gateway, streaming_upstream)
    client = RawClient(gw.url)
    try:
        # A chunk declared as 4 GiB, of which only 2,000 bytes are ever sent.
        client.send(chunked_head("limited.test") + b"100000000\r\n" + b"c" * 2000)
        status, _, _ = client.response()
        assert status == 413
    finally:
        client.close()
    if streaming_upstream.connections:  # the head may have gone upstream before the limit was hit
        assert_cut_short(streaming_upstream.connections[0])


@pytest.mark.parametrize("streaming_upstream", ["reading"], indirect=True)
def test_chunk_extensions_and_trailers_under_the_limit_pass_complete(
    streaming_upstream: StreamingUpstream,
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    gw = serve(manifests_dir, in_process_gateway, streaming_upstream)
    client = RawClient(gw.url)
    try:
        client.send(chunked_head("limited.test") + b"5;name=value\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
        status, _, body = client.response()
        assert (status, body) == (200, ANSWER)
    finally:
        client.close()
    connection = only_connection(streaming_upstream)
    assert (connection.complete, connection.payload) == (True, b"hello")
