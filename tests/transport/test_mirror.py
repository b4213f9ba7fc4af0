"""Request mirroring (transport/mirror.py) through the real connection pool to real servers.

Mirrors are ``RecordingUpstream`` echo servers (threads), or small asyncio servers that
refuse, stall or never answer. The main request's body is an in-memory ``RequestBody``
streamed the way the transport streams a client body; what the mirror received on the
wire is checked against it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterator, Sequence

import pytest

from gateway_core.errors import RequestError
from gateway_core.manifests.translate import BackendTarget
from gateway_core.manifests.upstream_policy import MirrorConfig
from gateway_core.messages import Endpoint, Headers, RequestContext, UpstreamRequest
from gateway_core.routing.table import Backend
from gateway_core.testing import RecordingUpstream, free_port
from gateway_core.testing.upstream import ReceivedRequest
from gateway_core.transport import mirror as mirror_module
from gateway_core.transport.mirror import BufferedBody, Mirrors, TeeBody
from gateway_core.transport.pool import ConnectionPool

# --- parts ----------------------------------------------------------------------------------


class _First:
    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self.endpoints = endpoints

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        return self.endpoints[0] if self.endpoints else None


def _backend(name: str, *ports: int) -> Backend:
    endpoints = tuple(Endpoint("127.0.0.1", port) for port in ports)
    return Backend(BackendTarget("default", name, "80", endpoints), _First(endpoints))


class StreamedBody:
    """A client body in memory, streamed chunk by chunk like the proxy's ``ClientBody``.

    ``fail_after`` raises a client error after that many chunks; ``declared`` overrides the
    declared length (to lie about it).
    """

    def __init__(
        self, chunks: Sequence[bytes], *, chunked: bool = False, declared: int | None = None, fail_after: int = -1
    ) -> None:
        self._chunks = list(chunks)
        self.content_length = None if chunked else (declared if declared is not None else sum(map(len, chunks)))
        self.consumed = False
        self.complete = False
        """Set before the last chunk is yielded, as the proxy's ``ClientBody`` does."""
        self._fail_after = fail_after

    async def chunks(self) -> AsyncIterator[bytes]:
        self.consumed = True
        for index, chunk in enumerate(self._chunks):
            if index == self._fail_after:
                raise RequestError("the client went away")
            await asyncio.sleep(0)
            self.complete = index == len(self._chunks) - 1
            yield chunk


class Results:
    """The ``record`` callback: (service, result) pairs as counted."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    def __call__(self, service: str, result: str) -> None:
        self.items.append((service, result))
        self._changed.set()

    async def wait(self, count: int = 1) -> None:
        """Until ``count`` results are in (10 s at most)."""
        async with asyncio.timeout(10):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

    def counts(self) -> Counter[str]:
        return Counter(result for _, result in self.items)


def _ctx(
    method: str = "GET", target: bytes = b"/path?q=1", body: object = None, host: str = "shop.test"
) -> RequestContext:
    headers = Headers(
        [(b"host", host.encode()), (b"x-forwarded-for", b"1.2.3.4"), (b"x-trace", b"abc")] if host else []
    )
    request = UpstreamRequest(method, target, headers, body)  # type: ignore[arg-type]
    return RequestContext(
        scope={},
        method=method,
        host=host,
        path="/path",
        scheme="http",
        client_ip="1.2.3.4",
        peer_ip="1.2.3.4",
        route=None,
        request=request,
    )


async def _drain(body: object) -> bytes:
    """Stream the (possibly wrapped) body as the transport would; the bytes it yielded."""
    received = b""
    async for chunk in body.chunks():  # type: ignore[attr-defined]
        received += chunk
    return received


@pytest.fixture
def echo() -> Iterator[RecordingUpstream]:
    with RecordingUpstream(name="mirror") as server:
        yield server


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    transport = ConnectionPool()
    yield transport
    await transport.aclose()


class _Silent(asyncio.Protocol):
    """Reads everything, answers nothing."""

    def __init__(self, connections: set[asyncio.BaseTransport], all_closed: asyncio.Event) -> None:
        self._connections = connections
        self._all_closed = all_closed
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._connections.add(transport)

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._connections.discard(self._transport)
        if not self._connections:
            self._all_closed.set()


@contextlib.asynccontextmanager
async def _silent_server() -> AsyncIterator[int]:
    """A server that accepts connections and reads, but never answers; its port."""
    connections: set[asyncio.BaseTransport] = set()
    all_closed = asyncio.Event()
    server = await asyncio.get_running_loop().create_server(lambda: _Silent(connections, all_closed), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        for _ in range(3):  # connections accepted just now get their connection_made
            await asyncio.sleep(0)
        if connections:
            all_closed.clear()
            for transport in list(connections):
                transport.abort()  # type: ignore[attr-defined]
            async with asyncio.timeout(10):
                await all_closed.wait()


def _one(server: RecordingUpstream) -> ReceivedRequest:
    assert len(server.requests) == 1, server.requests
    return server.requests[0]


# --- bodyless requests ----------------------------------------------------------------------


async def test_a_bodyless_request_is_copied_at_once(pool: ConnectionPool, echo: RecordingUpstream) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    ctx = _ctx()
    mirrors.start([(MirrorConfig(service="mirror", port=80), _backend("mirror", echo.port))], ctx)
    assert mirrors.in_flight == 1  # started, not awaited
    await results.wait()
    received = _one(echo)
    assert (received.method, received.path, received.body) == ("GET", "/path?q=1", b"")
    assert received.headers["host"] == "shop.test"  # the client's Host by default
    assert received.headers["x-forwarded-for"] == "1.2.3.4"
    assert received.headers["x-trace"] == "abc"
    assert results.items == [("default/mirror", "ok")]
    await asyncio.sleep(0)  # the finished task's done callback runs on the next loop pass
    assert mirrors.in_flight == 0


async def test_later_edits_of_the_main_request_do_not_reach_the_copy(
    pool: ConnectionPool, echo: RecordingUpstream
) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    ctx = _ctx()
    mirrors.start([(MirrorConfig(service="mirror", port=80), _backend("mirror", echo.port))], ctx)
    ctx.request.headers.set("host", "10.9.9.9:80")  # what Pipeline._attempt does without preserve_host
    ctx.request.headers.set("x-trace", "changed")
    await results.wait()
    assert _one(echo).headers["host"] == "shop.test"
    assert _one(echo).headers["x-trace"] == "abc"


@pytest.mark.parametrize("case", ["preserve_host off", "no client host"])
async def test_the_copy_names_the_mirror_endpoint_like_the_main_request_would(
    pool: ConnectionPool, echo: RecordingUpstream, case: str
) -> None:
    results = Results()
    mirrors = Mirrors(pool, preserve_host=case != "preserve_host off", record=results)
    ctx = _ctx(host="" if case == "no client host" else "shop.test")
    mirrors.start([(MirrorConfig(service="mirror", port=80), _backend("mirror", echo.port))], ctx)
    await results.wait()
    assert _one(echo).headers["host"] == f"127.0.0.1:{echo.port}"


async def test_every_mirror_of_a_route_gets_a_copy(pool: ConnectionPool) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    with RecordingUpstream(name="one") as one, RecordingUpstream(name="two") as two:
        mirrors.start(
            [
                (MirrorConfig(service="one", port=80), _backend("one", one.port)),
                (MirrorConfig(service="two", port=80), _backend("two", two.port)),
            ],
            _ctx(method="DELETE"),
        )
        await results.wait(2)
        assert _one(one).method == _one(two).method == "DELETE"
    assert sorted(results.items) == [("default/one", "ok"), ("default/two", "ok")]


async def test_percent_samples_requests() -> None:
    results = Results()
    mirrors = Mirrors(ConnectionPool(), record=results)
    nowhere = _backend("nowhere")  # no endpoint: each sampled copy is counted, nothing is sent
    config = MirrorConfig(service="nowhere", port=80, percent=25)
    for _ in range(4000):
        mirrors.start([(config, nowhere)], _ctx())
    sampled = results.counts()["no_endpoint"] / 4000
    assert sampled == pytest.approx(0.25, abs=0.04)  # 4000 draws: one standard deviation is 0.7 points


# --- failures stay in the mirror ------------------------------------------------------------


async def test_a_refused_mirror_is_counted_never_raised(pool: ConnectionPool) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    mirrors.start([(MirrorConfig(service="down", port=80), _backend("down", free_port()))], _ctx())
    await results.wait()
    assert results.items == [("default/down", "error")]


async def test_a_silent_mirror_times_out_at_its_timeout(pool: ConnectionPool) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    async with _silent_server() as port:
        mirrors.start([(MirrorConfig(service="slow", port=80, timeout=0.2), _backend("slow", port))], _ctx())
        await results.wait()
    assert results.items == [("default/slow", "timeout")]


async def test_copies_past_the_in_flight_limit_are_dropped_and_aclose_cancels_the_rest(
    pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mirror_module, "MAX_IN_FLIGHT", 3)
    results = Results()
    mirrors = Mirrors(pool, record=results)
    async with _silent_server() as port:
        config, backend = MirrorConfig(service="slow", port=80, timeout=60), _backend("slow", port)
        for _ in range(5):
            mirrors.start([(config, backend)], _ctx())
        assert mirrors.in_flight == 3
        assert results.items == [("default/slow", "too_busy")] * 2
        await mirrors.aclose()
        assert mirrors.in_flight == 0
        mirrors.start([(config, backend)], _ctx())  # closed: nothing more starts
        assert mirrors.in_flight == 0


async def test_copied_body_bytes_in_flight_are_bounded(pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mirror_module, "MAX_BODY_BYTES_IN_FLIGHT", 25)
    results = Results()
    mirrors = Mirrors(pool, record=results)
    async with _silent_server() as port:
        config, backend = MirrorConfig(service="slow", port=80, timeout=60), _backend("slow", port)
        for _ in range(3):
            ctx = _ctx(method="POST", body=StreamedBody([b"0123456789"]))
            mirrors.start([(config, backend)], ctx)
            assert await _drain(ctx.request.body) == b"0123456789"
        assert mirrors.in_flight == 2  # 10 + 10 bytes fit in 25, a third 10 does not
        assert results.items == [("default/slow", "too_busy")]
        await mirrors.aclose()


# --- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
async def test_the_body_is_copied_as_the_main_request_streams_it(
    pool: ConnectionPool, echo: RecordingUpstream, chunked: bool
) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    parts = [b"a" * 1000, b"b" * 70_000, b"c" * 3]
    body = StreamedBody(parts, chunked=chunked)
    ctx = _ctx(method="POST", body=body)
    mirrors.start([(MirrorConfig(service="mirror", port=80), _backend("mirror", echo.port))], ctx)
    wrapped = ctx.request.body
    assert isinstance(wrapped, TeeBody)
    assert mirrors.in_flight == 0  # nothing is sent before the body is whole
    assert wrapped.content_length == body.content_length
    consumed_before = wrapped.consumed
    assert await _drain(wrapped) == b"".join(parts)  # the main request sees the body unchanged
    assert not consumed_before
    assert wrapped.consumed  # retries still see the body as streamed
    assert body.consumed
    await results.wait()
    received = _one(echo)
    assert received.body == b"".join(parts)
    assert received.headers["content-length"] == str(71_003)  # exact, even when the client sent it chunked
    assert "transfer-encoding" not in received.headers
    assert results.items == [("default/mirror", "ok")]


async def test_a_declared_body_longer_than_max_body_is_not_mirrored() -> None:
    results = Results()
    mirrors = Mirrors(ConnectionPool(), record=results)
    body = StreamedBody([b"x" * 11])
    ctx = _ctx(method="PUT", body=body)
    mirrors.start([(MirrorConfig(service="m", port=80, max_body=10), _backend("m", free_port()))], ctx)
    assert ctx.request.body is body  # not even wrapped
    assert results.items == [("default/m", "body_too_large")]


async def test_a_chunked_body_growing_past_max_body_is_dropped_as_it_grows(
    pool: ConnectionPool, echo: RecordingUpstream
) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    parts = [b"x" * 6, b"y" * 6, b"z" * 6]
    ctx = _ctx(method="POST", body=StreamedBody(parts, chunked=True))
    mirrors.start(
        [
            (MirrorConfig(service="small", port=80, max_body=10), _backend("small", echo.port)),
            (MirrorConfig(service="big", port=80, max_body=20), _backend("big", echo.port)),
        ],
        ctx,
    )
    assert await _drain(ctx.request.body) == b"".join(parts)
    await results.wait(2)
    assert sorted(results.items) == [("default/big", "ok"), ("default/small", "body_too_large")]
    assert _one(echo).body == b"".join(parts)  # only the mirror it fits got it


async def test_max_body_zero_mirrors_bodyless_requests_only(pool: ConnectionPool, echo: RecordingUpstream) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    config, backend = MirrorConfig(service="m", port=80, max_body=0), _backend("m", echo.port)
    ctx = _ctx(method="POST", body=StreamedBody([b"data"], chunked=True))
    mirrors.start([(config, backend)], ctx)
    await _drain(ctx.request.body)
    mirrors.start([(config, backend)], _ctx())
    await results.wait(2)
    assert sorted(results.counts().items()) == [("body_too_large", 1), ("ok", 1)]
    assert _one(echo).method == "GET"


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_whole_body_is_mirrored_even_when_the_main_request_stops_at_its_last_chunk(
    pool: ConnectionPool, echo: RecordingUpstream, chunked: bool
) -> None:
    # The main upstream may answer as the last chunk goes out; the transport then stops
    # iterating the body before its end, but the copy is already whole.
    results = Results()
    mirrors = Mirrors(pool, record=results)
    ctx = _ctx(method="POST", body=StreamedBody([b"first", b"last"], chunked=chunked))
    mirrors.start([(MirrorConfig(service="m", port=80), _backend("m", echo.port))], ctx)
    assert ctx.request.body is not None
    stream = ctx.request.body.chunks()
    assert [await anext(stream), await anext(stream)] == [b"first", b"last"]
    await stream.aclose()  # type: ignore[attr-defined]
    await results.wait()
    assert results.items == [("default/m", "ok")]
    assert _one(echo).body == b"firstlast"


@pytest.mark.parametrize("case", ["client fails", "main stops reading", "shorter than declared"])
async def test_a_body_the_main_request_did_not_finish_is_never_mirrored(
    pool: ConnectionPool, echo: RecordingUpstream, case: str
) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    if case == "client fails":
        body = StreamedBody([b"a" * 10, b"b" * 10, b"c" * 10], fail_after=2)
    elif case == "shorter than declared":
        body = StreamedBody([b"a" * 10, b"b" * 10], declared=30)
    else:
        body = StreamedBody([b"a" * 10, b"b" * 10, b"c" * 10])
    ctx = _ctx(method="POST", body=body)
    mirrors.start([(MirrorConfig(service="m", port=80), _backend("m", echo.port))], ctx)
    wrapped = ctx.request.body
    assert wrapped is not None
    if case == "client fails":
        with pytest.raises(RequestError, match="went away"):  # the main request sees its own error
            await _drain(wrapped)
    else:
        stream = wrapped.chunks()
        assert await anext(stream) == b"a" * 10
        if case == "shorter than declared":
            assert await anext(stream) == b"b" * 10
            with pytest.raises(StopAsyncIteration):
                await anext(stream)
        else:
            await stream.aclose()  # type: ignore[attr-defined]
    assert results.items == [("default/m", "body_incomplete")]
    assert mirrors.in_flight == 0
    await asyncio.sleep(0.05)
    assert echo.requests == []


async def test_a_second_pass_over_a_replayable_body_is_not_copied_again(
    pool: ConnectionPool, echo: RecordingUpstream
) -> None:
    results = Results()
    mirrors = Mirrors(pool, record=results)
    ctx = _ctx(method="POST", body=BufferedBody(b"payload"))
    mirrors.start([(MirrorConfig(service="m", port=80), _backend("m", echo.port))], ctx)
    assert ctx.request.body is not None
    assert await _drain(ctx.request.body) == b"payload"
    assert await _drain(ctx.request.body) == b"payload"  # a retry of the main request
    await results.wait()
    await asyncio.sleep(0.05)
    assert results.items == [("default/m", "ok")]
    assert _one(echo).body == b"payload"
