"""The pooled HTTP/1.1 upstream transport against real upstream servers that misbehave on purpose.

Each test starts a small ``asyncio`` server (``RawUpstream``) whose behaviour is written in
the test, sends requests through a real :class:`ConnectionPool`, and checks what came back
and what the server received on the wire. Nothing of the gateway is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway_core.errors import (
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway_core.messages import Endpoint, Headers, ResponseBody, Timeouts, UpstreamRequest
from gateway_core.transport.base import PoolStats
from gateway_core.transport.pool import ConnectionPool
from gateway_core.transport.stream import HIGH_WATER

# --- a scriptable upstream ---------------------------------------------------------------


@dataclass
class Received:
    """One request exactly as the upstream received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    """The head and the body bytes as they came off the wire (chunk framing included)."""

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]


@dataclass
class ServerConnection:
    """One accepted connection of a :class:`RawUpstream`."""

    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[Received] = field(default_factory=list)
    peer_closed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the client (the pool) closed or reset the connection."""
    reading: bool = False
    """True while the handler waits in :meth:`read_request`."""

    async def read_request(self) -> Received | None:
        """The next request, or None once the client closed the connection."""
        self.reading = True
        try:
            return await self._read_request()
        finally:
            self.reading = False

    async def _read_request(self) -> Received | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.peer_closed.set()
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        raw = head
        body = b""
        lengths = [value for name, value in headers if name == "content-length"]
        codings = [value for name, value in headers if name == "transfer-encoding"]
        if codings and codings[-1].lower() == "chunked":
            chunks = []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                raw += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        trailer = await self.reader.readuntil(b"\r\n")
                        raw += trailer
                        if trailer == b"\r\n":
                            break
                    break
                data = await self.reader.readexactly(size + 2)
                raw += data
                chunks.append(data[:-2])
            body = b"".join(chunks)
        elif lengths:
            body = await self.reader.readexactly(int(lengths[0]))
            raw += body
        request = Received(method, target, headers, body, raw)
        self.requests.append(request)
        return request

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def respond(
        self,
        status: int = 200,
        body: bytes = b"",
        *,
        reason: str = "OK",
        headers: Iterable[tuple[str, str]] = (),
        length: bool = True,
    ) -> None:
        """Write a whole response (with Content-Length unless ``length=False``) and drain."""
        head = f"HTTP/1.1 {status} {reason}\r\n"
        for name, value in headers:
            head += f"{name}: {value}\r\n"
        if length:
            head += f"Content-Length: {len(body)}\r\n"
        self.writer.write(head.encode("latin-1") + b"\r\n" + body)
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def wait_peer_closed(self, within: float = 2.0) -> bool:
        """Read (and drop) until the client closes; False if it has not within ``within`` seconds.

        When the handler is itself waiting for a request, this only waits for it to see EOF.
        """

        async def drain() -> None:
            if self.reading:
                await self.peer_closed.wait()
            while not self.peer_closed.is_set():
                try:
                    data = await self.reader.read(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    self.peer_closed.set()

        try:
            await asyncio.wait_for(drain(), within)
        except TimeoutError:
            return False
        return True


Handler = Callable[[ServerConnection], Awaitable[None]]


class RawUpstream:
    """A TCP server on 127.0.0.1 that runs ``handler`` for every connection it accepts."""

    def __init__(self, handler: Handler, *, sndbuf: int | None = None) -> None:
        self._handler = handler
        self._sndbuf = sndbuf
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.errors: list[BaseException] = []
        """Unexpected exceptions of the handler (a broken test server must not pass silently)."""
        self.connections: list[ServerConnection] = []
        self.port = 0

    async def start(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    @property
    def requests(self) -> list[Received]:
        return [request for connection in self.connections for request in connection.requests]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        if self._sndbuf is not None:
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._sndbuf)
        connection = ServerConnection(len(self.connections), reader, writer)
        self.connections.append(connection)
        try:
            await self._handler(connection)
        except (ConnectionError, asyncio.IncompleteReadError):
            connection.peer_closed.set()
        except Exception as exc:
            if not self._closing:
                self.errors.append(exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def aclose(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in self.connections:
            connection.writer.transport.abort()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=0.3)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


async def serve_ok(connection: ServerConnection, body: bytes = b"hello") -> None:
    """Answer every request on the connection with 200 and ``body`` (keep-alive)."""
    while await connection.read_request() is not None:
        await connection.respond(200, body)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[RawUpstream]]]:
    """``await serve(handler)`` starts a :class:`RawUpstream`; all are closed after the test."""
    servers: list[RawUpstream] = []

    async def make(handler: Handler = serve_ok, **options: Any) -> RawUpstream:
        server = await RawUpstream(handler, **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.aclose()
    errors = [error for server in servers for error in server.errors]
    assert not errors, f"a test upstream failed: {errors!r}"


@pytest.fixture
async def make_pool() -> AsyncIterator[Callable[..., ConnectionPool]]:
    """``make_pool(max_idle=..., idle_timeout=..., keep_alive=...)``; closed after the test."""
    pools: list[ConnectionPool] = []

    def make(**options: Any) -> ConnectionPool:
        pool = ConnectionPool(**options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.aclose()


@pytest.fixture
def pool(make_pool: Callable[..., ConnectionPool]) -> ConnectionPool:
    return make_pool()


def request(
    method: str = "GET", target: str = "/", *, body: Any = None, headers: Iterable[tuple[str, str]] = ()
) -> UpstreamRequest:
    """An upstream request with a Host header."""
    raw = [(b"host", b"upstream.test")]
    raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    return UpstreamRequest(method, target.encode("ascii"), Headers(raw), body)


class Body:
    """A request body for the transport: ``parts`` yielded one by one (``content_length`` as given)."""

    def __init__(self, parts: Iterable[bytes], content_length: int | None, *, delay: float = 0.0) -> None:
        self.parts = list(parts)
        self.content_length = content_length
        self.delay = delay
        self.yielded = 0
        self.consumed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.consumed = True
        for part in self.parts:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.yielded += 1
            yield part


async def read_all(body: ResponseBody) -> bytes:
    parts = []
    while chunk := await body.read():
        parts.append(chunk)
    return b"".join(parts)


async def until(predicate: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.01)


# --- keep-alive and response framing --------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    release = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        while (received := await connection.read_request()) is not None:
            body = f"answer to {received.target}".encode()
            connection.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            await release.wait()  # head first; the body only when the test says so
            connection.write(body)

    server = await serve(handler)
    endpoint = server.endpoint

    response = await pool.send(request(target="/one"), endpoint, Timeouts())
    assert response.status == 200
    assert response.endpoint == endpoint
    assert pool.stats() == {endpoint: PoolStats(idle=0, active=1)}
    release.set()
    assert await read_all(response.body) == b"answer to /one"
    assert pool.stats() == {endpoint: PoolStats(idle=1, active=0)}

    response = await pool.send(request(target="/two"), endpoint, Timeouts())
    assert await read_all(response.body) == b"answer to /two"
    assert pool.stats() == {endpoint: PoolStats(idle=1, active=0)}
    assert len(server.connections) == 1
    assert [r.target for r in server.connections[0].requests] == ["/one", "/two"]


async def test_concurrent_requests_use_separate_connections(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    arrived = 0
    both_in = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        nonlocal arrived
        while (received := await connection.read_request()) is not None:
            arrived += 1
            if arrived == 2:
                both_in.set()
            await both_in.wait()  # answer only once both requests are in flight
            await connection.respond(200, received.target.encode())

    server = await serve(handler)
    first, second = await asyncio.gather(
        pool.send(request(target="/a"), server.endpoint, Timeouts()),
        pool.send(request(target="/b"), server.endpoint, Timeouts()),
    )
    assert await read_all(first.body) == b"/a"
    assert await read_all(second.body) == b"/b"
    assert len(server.connections) == 2
    assert pool.stats() == {server.endpoint: PoolStats(idle=2, active=0)}


async def test_chunked_response_with_extensions_and_trailers(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        while await connection.read_request() is not None:
            connection.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            connection.write(b"5;name=value\r\nhello\r\n")
            await connection.writer.drain()
            await asyncio.sleep(0.02)
            connection.write(b"1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: yes\r\n\r\n")

    server = await serve(handler)
    for _ in range(2):
        response = await pool.send(request(), server.endpoint, Timeouts())
        assert response.headers.get("transfer-encoding") == "chunked"
        assert await read_all(response.body) == b"hello world"
    assert len(server.connections) == 1, "a complete chunked response keeps the connection alive"


async def test_close_delimited_response(serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool) -> None:
    async def handler(connection: ServerConnection) -> None:
        if await connection.read_request() is not None:
            connection.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
            await connection.writer.drain()
            await asyncio.sleep(0.05)
            connection.write(b"part two")
            await connection.writer.drain()
            # returning closes the connection: that ends the body

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts())
    assert response.status == 200
    assert await read_all(response.body) == b"part one, part two"
    await until(lambda: pool.stats() == {})

    response = await pool.send(request(), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"part one, part two"
    assert len(server.connections) == 2


async def test_large_content_length_response_arrives_whole(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    payload = bytes(range(256)) * 4096 * 3  # 3 MiB

    async def handler(connection: ServerConnection) -> None:
        while await connection.read_request() is not None:
            await connection.respond(200, payload)

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts())
    assert response.headers.get("content-length") == str(len(payload))
    assert await read_all(response.body) == payload
    assert pool.stats() == {server.endpoint: PoolStats(idle=1, active=0)}


@pytest.mark.parametrize(
    ("status", "extra"),
    [(204, ""), (304, 'Content-Length: 1234\r\nETag: "v1"\r\n'), (204, "Transfer-Encoding: chunked\r\n")],
    ids=["204", "304-with-content-length", "204-claiming-chunked"],
)
async def test_bodyless_statuses_then_reuse(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool, status: int, extra: str
) -> None:
    async def handler(connection: ServerConnection) -> None:
        if await connection.read_request() is not None:
            connection.write(f"HTTP/1.1 {status} Whatever\r\n{extra}\r\n".encode())
        while await connection.read_request() is not None:
            await connection.respond(200, b"next")

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts(read=2))
    assert response.status == status
    assert await asyncio.wait_for(read_all(response.body), 2) == b""
    response = await pool.send(request(), server.endpoint, Timeouts(read=2))
    assert await read_all(response.body) == b"next"
    assert len(server.connections) == 1


async def test_head_response_has_no_body_and_connection_is_reused(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        while (received := await connection.read_request()) is not None:
            if received.method == "HEAD":
                connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            else:
                await connection.respond(200, b"0123456789")

    server = await serve(handler)
    response = await pool.send(request("HEAD"), server.endpoint, Timeouts(read=2))
    assert response.status == 200
    assert response.headers.get("content-length") == "10"
    assert await asyncio.wait_for(read_all(response.body), 2) == b""
    assert pool.stats() == {server.endpoint: PoolStats(idle=1, active=0)}

    for _ in range(2):
        response = await pool.send(request("GET"), server.endpoint, Timeouts(read=2))
        assert await read_all(response.body) == b"0123456789"
    response = await pool.send(request("HEAD"), server.endpoint, Timeouts(read=2))
    assert await read_all(response.body) == b""
    response = await pool.send(request("GET"), server.endpoint, Timeouts(read=2))
    assert await read_all(response.body) == b"0123456789"
    assert len(server.connections) == 1
    assert [r.method for r in server.requests] == ["HEAD", "GET", "GET", "HEAD", "GET"]


@pytest.mark.parametrize("separate_packets", [False, True], ids=["one-packet", "separate-packets"])
async def test_interim_responses_are_skipped(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool, separate_packets: bool
) -> None:
    parts = [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nX-Final: 1\r\n\r\n",
        b"done",
    ]

    async def handler(connection: ServerConnection) -> None:
        while await connection.read_request() is not None:
            for part in parts:
                connection.write(part)
                if separate_packets:
                    await connection.writer.drain()
                    await asyncio.sleep(0.02)
            await connection.writer.drain()

    server = await serve(handler)
    for _ in range(2):
        response = await pool.send(request("POST", body=Body([b"x"], 1)), server.endpoint, Timeouts(read=2))
        assert response.status == 201
        assert response.headers.get("x-final") == "1"
        assert "link" not in response.headers
        assert await read_all(response.body) == b"done"
    assert len(server.connections) == 1


async def test_response_consumed_with_take(serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool) -> None:
    """``take()`` (what the proxy calls first) hands over the buffered part and whether it is all."""
    release = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        while await connection.read_request() is not None:
            connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
            await connection.writer.drain()
            await release.wait()
            connection.write(b"-last")

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts())
    await asyncio.sleep(0.05)
    data, done = response.body.take()
    assert (data, done) == (b"first", False)
    release.set()
    assert await read_all(response.body) == b"-last"
    data, done = response.body.take()
    assert (data, done) == (b"", True)


# --- request framing ---------------------------------------------------------------------


async def test_request_body_with_known_length_is_sent_with_content_length(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    server = await serve()
    body = Body([b"hello ", b"", b"world"], 11)
    response = await pool.send(request("PUT", "/upload", body=body), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"hello"
    received = server.requests[0]
    assert received.header_all("content-length") == ["11"]
    assert received.header("transfer-encoding") is None
    assert received.raw.endswith(b"\r\n\r\nhello world")
    assert received.body == b"hello world"


async def test_request_body_of_unknown_length_is_sent_chunked(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    server = await serve()
    body = Body([b"hello", b"", b" big", b" world"], None)  # an empty part must not end the body early
    response = await pool.send(request("POST", body=body), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"hello"
    received = server.requests[0]
    assert received.header_all("transfer-encoding") == ["chunked"]
    assert received.header("content-length") is None
    assert received.raw.endswith(b"\r\n\r\n5\r\nhello\r\n4\r\n big\r\n6\r\n world\r\n0\r\n\r\n")
    assert received.body == b"hello big world"

    # The connection is reused after a chunked upload: the framing was complete.
    response = await pool.send(request("POST", body=Body([], None)), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"hello"
    assert server.requests[1].raw.endswith(b"\r\n\r\n0\r\n\r\n")
    assert len(server.connections) == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_bodyless_request_with_a_body_method_gets_content_length_zero(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool, method: str
) -> None:
    server = await serve()
    response = await pool.send(request(method), server.endpoint, Timeouts())
    await read_all(response.body)
    received = server.requests[0]
    assert received.method == method
    assert received.header_all("content-length") == ["0"]
    assert received.header("transfer-encoding") is None


async def test_bodyless_get_carries_no_framing_headers(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    server = await serve()
    response = await pool.send(request("GET", "/p?q=1", headers=[("X-Custom", "v")]), server.endpoint, Timeouts())
    await read_all(response.body)
    received = server.requests[0]
    assert received.raw.startswith(b"GET /p?q=1 HTTP/1.1\r\n")
    assert received.header("content-length") is None
    assert received.header("transfer-encoding") is None
    assert received.header("host") == "upstream.test"
    assert received.header("x-custom") == "v"


async def test_large_streamed_request_body(serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool) -> None:
    server = await serve()
    parts = [bytes([i]) * 65536 for i in range(64)]  # 4 MiB in 64 KiB parts
    for length in (sum(map(len, parts)), None):
        response = await pool.send(request("POST", body=Body(parts, length)), server.endpoint, Timeouts())
        await read_all(response.body)
    assert [r.body for r in server.requests] == [b"".join(parts)] * 2


# --- stale and broken connections ------------------------------------------------------------


async def test_idle_connection_closed_by_server_is_replaced(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        if await connection.read_request() is not None:
            await connection.respond(200, b"once")  # keep-alive response, then the server hangs up

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"once"
    await server.connections[0].wait_peer_closed(0.2)  # let the FIN travel
    await asyncio.sleep(0.05)
    response = await pool.send(request(), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"once"
    assert len(server.connections) == 2


async def test_reused_connection_closed_before_answering_is_retried_for_a_bodyless_request(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    """The keep-alive race: the server takes the next request on an idle connection and closes it."""

    async def handler(connection: ServerConnection) -> None:
        if connection.index == 0:
            await connection.read_request()
            await connection.respond(200, b"first")
            await connection.read_request()  # read the second request, then close without a word
            return
        await serve_ok(connection, b"second")

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"first"
    response = await pool.send(request(target="/again"), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"second"
    assert len(server.connections) == 2
    assert [r.target for r in server.connections[1].requests] == ["/again"]


async def test_reused_connection_closed_before_answering_is_not_retried_with_a_body(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()
        await connection.respond(200, b"first")
        await connection.read_request()
        # close without answering the request that had a body

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"first"
    with pytest.raises(UpstreamClosedError):
        await pool.send(request("POST", body=Body([b"payload"], 7)), server.endpoint, Timeouts(read=2))
    assert len(server.connections) == 1, "a request body cannot be replayed, so no retry"


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_idempotent_request_is_never_retried(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool, method: str
) -> None:
    """RFC 9110 §9.2.2: "A proxy MUST NOT automatically retry non-idempotent requests."

    The upstream read the request before it hung up, so it may have acted on it; a bodyless
    POST (parameters in the query) is as unsafe to send twice as one with a body.
    """

    async def handler(connection: ServerConnection) -> None:
        if connection.index == 0:
            await connection.read_request()
            await connection.respond(200, b"first")
            await connection.read_request()  # took the POST, then went away without answering
            return
        await serve_ok(connection, b"second")

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"first"
    with pytest.raises(UpstreamClosedError):
        await pool.send(request(method, "/charge?amount=10"), server.endpoint, Timeouts(read=2))
    charged = [r for r in server.requests if r.target == "/charge?amount=10"]
    assert len(charged) == 1, f"the {method} reached the upstream {len(charged)} times"


async def test_fresh_connection_closed_before_answering_raises(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()

    server = await serve(handler)
    with pytest.raises(UpstreamClosedError):
        await pool.send(request(), server.endpoint, Timeouts(read=2))
    assert len(server.connections) == 1
    await until(lambda: pool.stats() == {})  # connection_lost runs a loop turn after abort


async def test_connection_refused(pool: ConnectionPool) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(UpstreamConnectError) as info:
            await pool.send(request(), Endpoint("127.0.0.1", port), Timeouts(connect=2))
    assert str(port) in str(info.value)
    await until(lambda: pool.stats() == {})  # connection_lost runs a loop turn after abort


async def test_unresolvable_host_is_a_connect_error(pool: ConnectionPool) -> None:
    with pytest.raises(UpstreamConnectError):
        await pool.send(request(), Endpoint("no-such-host.invalid", 80), Timeouts(connect=10))


async def test_connect_timeout(pool: ConnectionPool) -> None:
    """A listener whose accept queue is full drops SYNs, so connecting hangs until the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
            fillers.append(filler)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeoutError):
            await pool.send(request(), Endpoint(*address), Timeouts(connect=0.3))
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 1.0
        await until(lambda: pool.stats() == {})
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_read_timeout_when_the_server_never_answers(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()
        await connection.wait_peer_closed(10)

    server = await serve(handler)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await pool.send(request(), server.endpoint, Timeouts(read=0.3))
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.5
    await until(lambda: pool.stats() == {})  # connection_lost runs a loop turn after abort
    assert await server.connections[0].wait_peer_closed(1), "the timed-out connection is closed"


async def test_read_timeout_between_body_chunks(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()
        connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome of it")
        await connection.wait_peer_closed(10)

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts(read=0.3))
    assert await response.body.read() == b"some of it"
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await response.body.read()
    assert time.monotonic() - started < 0.5
    await until(lambda: pool.stats() == {})  # connection_lost runs a loop turn after abort


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("how", ["reset", "close"])
async def test_server_failing_mid_body(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool, framing: str, how: str
) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()
        if framing == "chunked":
            connection.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        else:
            connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhello")
        await connection.writer.drain()
        await asyncio.sleep(0.05)
        if how == "reset":
            connection.reset()

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts(read=5))
    assert await response.body.read() == b"hello"
    with pytest.raises(UpstreamClosedError):
        await asyncio.wait_for(response.body.read(), 2)
    await until(lambda: pool.stats() == {})  # connection_lost runs a loop turn after abort


@pytest.mark.parametrize(
    "answer",
    [
        b"this is not http\r\n\r\n",
        b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header Name: x\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ],
    ids=[
        "garbage",
        "bad-status",
        "conflicting-lengths",
        "length-and-chunked",
        "negative-length",
        "bad-header-name",
        "unexpected-upgrade",
    ],
)
async def test_invalid_response_head_is_a_protocol_error(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool, answer: bytes
) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()
        connection.write(answer)
        await connection.wait_peer_closed(5)

    server = await serve(handler)
    with pytest.raises(UpstreamProtocolError):
        await pool.send(request(), server.endpoint, Timeouts(read=2))
    await until(lambda: pool.stats() == {})  # connection_lost runs a loop turn after abort
    assert await server.connections[0].wait_peer_closed(1)


async def test_invalid_chunk_in_body_is_a_protocol_error(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()
        connection.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await connection.writer.drain()
        await asyncio.sleep(0.05)
        connection.write(b"zz\r\nnot a chunk\r\n")
        await connection.wait_peer_closed(5)

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts(read=2))
    assert await response.body.read() == b"hello"
    with pytest.raises(UpstreamProtocolError):
        await asyncio.wait_for(response.body.read(), 2)
    await until(lambda: pool.stats() == {})  # connection_lost runs a loop turn after abort


# --- flow control --------------------------------------------------------------------------

BLOCK = 64 * 1024
MAX_READ = 256 * 1024
"""The most one socket read delivers on either loop (asyncio's and uvloop's read buffers)."""


def pattern_block(index: int) -> bytes:
    """64 KiB whose content says which block it is, so order is checkable."""
    return index.to_bytes(4, "big") * (BLOCK // 4)


async def test_large_response_read_slowly_keeps_memory_bounded(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    blocks = 128  # 8 MiB
    total = blocks * BLOCK
    progress = {"written": 0}
    finished = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()
        connection.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        for index in range(blocks):
            connection.write(pattern_block(index))
            await connection.writer.drain()
            progress["written"] += BLOCK
        finished.set()
        await connection.wait_peer_closed(10)

    server = await serve(handler, sndbuf=64 * 1024)
    response = await pool.send(request(), server.endpoint, Timeouts(read=5))
    body = response.body
    digest = hashlib.sha256()
    received = 0
    max_buffered = 0

    chunk = await body.read()
    digest.update(chunk)
    received += len(chunk)
    await asyncio.sleep(0.8)  # a stalled client: the upstream must stall too
    stalled_at = progress["written"]
    buffered = body._buffered  # type: ignore[attr-defined]
    assert buffered <= HIGH_WATER + MAX_READ, f"{buffered} bytes buffered while the client is not reading"
    # What the upstream got rid of is our buffer plus the kernel's socket buffers (~1.5 MiB here).
    assert stalled_at < total // 2, f"the upstream wrote {stalled_at} of {total} bytes to a stalled client"
    assert not finished.is_set()

    while chunk := await body.read():
        digest.update(chunk)
        received += len(chunk)
        max_buffered = max(max_buffered, body._buffered)  # type: ignore[attr-defined]
        if received % (1024 * 1024) < len(chunk):
            await asyncio.sleep(0.01)  # a slowish reader
    assert received == total
    assert max_buffered <= HIGH_WATER + MAX_READ
    expected = hashlib.sha256(b"".join(pattern_block(index) for index in range(blocks)))
    assert digest.hexdigest() == expected.hexdigest(), "bytes arrived out of order or corrupted"
    assert finished.is_set()
    assert pool.stats() == {server.endpoint: PoolStats(idle=1, active=0)}


async def test_slow_client_is_not_an_upstream_read_timeout(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    """While reading is paused for a slow consumer, the upstream is not 'silent'."""
    blocks = 64  # 4 MiB

    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()
        connection.write(f"HTTP/1.1 200 OK\r\nContent-Length: {blocks * BLOCK}\r\n\r\n".encode())
        for index in range(blocks):
            connection.write(pattern_block(index))
            await connection.writer.drain()
        await connection.wait_peer_closed(10)

    server = await serve(handler, sndbuf=64 * 1024)
    response = await pool.send(request(), server.endpoint, Timeouts(read=0.2))
    received = len(await response.body.read())
    await asyncio.sleep(0.6)  # three read timeouts long, with the upstream paused by us
    received += len(await read_all(response.body))
    assert received == blocks * BLOCK


async def test_upstream_not_reading_the_request_body_is_a_write_timeout(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.reader.readuntil(b"\r\n\r\n")  # the head, then never read again
        await asyncio.sleep(10)

    server = await serve(handler)
    parts = [b"x" * (1024 * 1024)] * 256
    body = Body(parts, len(parts) * len(parts[0]))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await pool.send(request("POST", body=body), server.endpoint, Timeouts(write=0.3, read=5))
    assert time.monotonic() - started < 3
    assert body.yielded < len(parts), "the body was not paced by the upstream socket"
    await until(lambda: pool.stats() == {})


# --- pool bookkeeping --------------------------------------------------------------------------


async def test_max_idle_caps_idle_connections(
    serve: Callable[..., Awaitable[RawUpstream]], make_pool: Callable[..., ConnectionPool]
) -> None:
    pool = make_pool(max_idle=2)
    waiting = 0
    all_in = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        nonlocal waiting
        while await connection.read_request() is not None:
            waiting += 1
            if waiting == 3:
                all_in.set()
            await all_in.wait()
            await connection.respond(200, b"ok")

    server = await serve(handler)
    responses = await asyncio.gather(*(pool.send(request(), server.endpoint, Timeouts()) for _ in range(3)))
    for response in responses:
        assert await read_all(response.body) == b"ok"
    assert len(server.connections) == 3
    await until(lambda: pool.stats() == {server.endpoint: PoolStats(idle=2, active=0)})
    closed = await asyncio.gather(*(connection.wait_peer_closed(0.3) for connection in server.connections))
    assert sorted(closed) == [False, False, True], "exactly the connection over the cap is closed"

    for _ in range(4):  # sequential traffic now runs on the idle ones
        response = await pool.send(request(), server.endpoint, Timeouts())
        await read_all(response.body)
    assert len(server.connections) == 3


async def test_max_idle_counts_across_endpoints(
    serve: Callable[..., Awaitable[RawUpstream]], make_pool: Callable[..., ConnectionPool]
) -> None:
    pool = make_pool(max_idle=1)
    first, second = await serve(), await serve()
    for server in (first, second):
        response = await pool.send(request(), server.endpoint, Timeouts())
        await read_all(response.body)
    await until(lambda: pool.stats() == {first.endpoint: PoolStats(idle=1, active=0)})
    assert await second.connections[0].wait_peer_closed(1)


async def test_keep_alive_disabled(
    serve: Callable[..., Awaitable[RawUpstream]], make_pool: Callable[..., ConnectionPool]
) -> None:
    pool = make_pool(max_idle=0, keep_alive=False)
    server = await serve()
    for _ in range(2):
        response = await pool.send(request(), server.endpoint, Timeouts())
        assert await read_all(response.body) == b"hello"
    assert len(server.connections) == 2
    assert all(r.header("connection") == "close" for r in server.requests)
    await until(lambda: pool.stats() == {})


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_server_not_keeping_alive_is_not_reused(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool, answer: bytes
) -> None:
    async def handler(connection: ServerConnection) -> None:
        while await connection.read_request() is not None:
            connection.write(answer)  # ... and keep the socket open: the pool must not reuse it

    server = await serve(handler)
    for _ in range(2):
        response = await pool.send(request(), server.endpoint, Timeouts(read=2))
        assert await read_all(response.body) == b"ok"
    assert len(server.connections) == 2
    assert await server.connections[0].wait_peer_closed(1)


async def test_idle_timeout_closes_idle_connections(
    serve: Callable[..., Awaitable[RawUpstream]], make_pool: Callable[..., ConnectionPool]
) -> None:
    pool = make_pool(idle_timeout=0.2)
    server = await serve()
    response = await pool.send(request(), server.endpoint, Timeouts())
    await read_all(response.body)
    assert pool.stats() == {server.endpoint: PoolStats(idle=1, active=0)}
    assert await server.connections[0].wait_peer_closed(1.0), "the sweeper closes the idle connection"
    await until(lambda: pool.stats() == {})

    response = await pool.send(request(), server.endpoint, Timeouts())
    assert await read_all(response.body) == b"hello"
    assert len(server.connections) == 2


async def test_body_closed_early_does_not_return_the_connection(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    async def handler(connection: ServerConnection) -> None:
        while await connection.read_request() is not None:
            connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part")
            await connection.writer.drain()

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts(read=5))
    assert await response.body.read() == b"first part"
    response.body.close()
    assert await server.connections[0].wait_peer_closed(1)
    await until(lambda: pool.stats() == {})
    response = await pool.send(request(), server.endpoint, Timeouts(read=5))
    assert await response.body.read() == b"first part"
    assert len(server.connections) == 2
    response.body.close()


async def test_close_wakes_a_pending_read(serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool) -> None:
    """``close()`` from another task (the proxy's client-disconnect watcher) ends a ``read()`` waiting on it.

    Otherwise the reading task waits forever: the connection is gone, so neither data, nor
    EOF, nor the read timeout will ever wake it.
    """

    async def handler(connection: ServerConnection) -> None:
        await connection.read_request()
        connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part")
        await connection.wait_peer_closed(5)  # ... and the rest never comes

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts(read=0.3))
    assert await response.body.read() == b"first part"
    reader = asyncio.ensure_future(response.body.read())
    await asyncio.sleep(0.05)
    assert not reader.done()
    response.body.close()
    done, _ = await asyncio.wait({reader}, timeout=1)
    if not done:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    assert done, "read() still waits after close()"
    with contextlib.suppress(UpstreamClosedError):
        assert reader.result() == b""
    assert await server.connections[0].wait_peer_closed(1)


async def test_early_response_during_upload_is_not_reused(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    """The upstream answers (413) before the body is sent: the rest of the body is not sent."""

    async def handler(connection: ServerConnection) -> None:
        await connection.reader.readuntil(b"\r\n\r\n")
        await connection.respond(413, b"too big", reason="Content Too Large")
        await connection.wait_peer_closed(5)

    server = await serve(handler)
    body = Body([b"x" * 1024] * 50, 50 * 1024, delay=0.02)
    response = await pool.send(request("POST", body=body), server.endpoint, Timeouts(read=5))
    assert response.status == 413
    assert await read_all(response.body) == b"too big"
    assert body.yielded < 50
    assert await server.connections[0].wait_peer_closed(1), "a half-sent request leaves the connection unusable"
    await until(lambda: pool.stats() == {})


async def test_early_response_is_returned_while_the_client_is_still_uploading(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool
) -> None:
    """The Transport contract: ``send`` returns "as soon as the head is in".

    An upstream that refuses an upload at once (401, 413) must not wait for the client's
    next body chunk to be heard; a client pausing its upload would otherwise hold it for
    as long as it pauses.
    """

    async def handler(connection: ServerConnection) -> None:
        await connection.reader.readuntil(b"\r\n\r\n")
        await connection.respond(413, b"too big", reason="Content Too Large")
        await connection.wait_peer_closed(5)

    class PausingBody:
        content_length = 2048

        async def chunks(self) -> AsyncIterator[bytes]:
            yield b"x" * 1024
            await asyncio.sleep(1.0)  # the client pauses mid-upload
            yield b"x" * 1024

    server = await serve(handler)
    started = time.monotonic()
    response = await pool.send(request("POST", body=PausingBody()), server.endpoint, Timeouts(read=5))
    elapsed = time.monotonic() - started
    assert response.status == 413
    assert await read_all(response.body) == b"too big"
    assert elapsed < 0.5, f"the upstream's answer waited {elapsed:.2f}s for the client's next chunk"


async def test_aclose_closes_idle_and_active_connections(
    serve: Callable[..., Awaitable[RawUpstream]], make_pool: Callable[..., ConnectionPool]
) -> None:
    pool = make_pool()

    async def handler(connection: ServerConnection) -> None:
        while (received := await connection.read_request()) is not None:
            if received.target == "/slow":
                connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart")
                await connection.writer.drain()
            else:
                await connection.respond(200, b"ok")

    server = await serve(handler)
    slow = await pool.send(request(target="/slow"), server.endpoint, Timeouts(read=10))
    assert await slow.body.read() == b"start"
    quick = await pool.send(request(target="/quick"), server.endpoint, Timeouts())
    await read_all(quick.body)
    assert pool.stats() == {server.endpoint: PoolStats(idle=1, active=1)}

    await pool.aclose()
    assert pool.stats() == {}
    closed = await asyncio.gather(*(connection.wait_peer_closed(1) for connection in server.connections))
    assert closed == [True, True]
    with pytest.raises(UpstreamClosedError):
        await asyncio.wait_for(slow.body.read(), 1)


@pytest.mark.parametrize("size", [10, 2 * 1024 * 1024], ids=["small-response", "large-response"])
async def test_cancelled_send_does_not_leak_its_connection(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool, size: int
) -> None:
    """A caller that gives up (a plugin's own timeout, a cancelled task) must not strand the connection.

    The late response nobody will read must not keep the connection busy: it is either closed
    at once or, if it was read whole, back in the pool. Never open and active for good.
    """

    async def handler(connection: ServerConnection) -> None:
        while (received := await connection.read_request()) is not None:
            if received.target == "/slow":
                await asyncio.sleep(0.2)
                await connection.respond(200, b"x" * size)
            else:
                await connection.respond(200, b"fast")

    server = await serve(handler)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await pool.send(request(target="/slow"), server.endpoint, Timeouts(read=0.4))
    await asyncio.sleep(0.7)  # the late response has arrived; the read timeout has passed too
    assert all(stats.active == 0 for stats in pool.stats().values()), pool.stats()
    response = await pool.send(request(target="/fast"), server.endpoint, Timeouts(read=0.4))
    assert await read_all(response.body) == b"fast"


@pytest.mark.parametrize(
    "unsolicited",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsmug",
        b"trailing garbage",
    ],
    ids=["whole-response", "partial-response", "garbage"],
)
async def test_data_on_an_idle_connection_does_not_answer_the_next_request(
    serve: Callable[..., Awaitable[RawUpstream]], pool: ConnectionPool, unsolicited: bytes
) -> None:
    """Bytes an upstream sends while no request is outstanding must never be taken for a later answer."""

    async def handler(connection: ServerConnection) -> None:
        first = True
        while await connection.read_request() is not None:
            await connection.respond(200, b"real")
            if first:
                first = False
                await asyncio.sleep(0.05)
                connection.write(unsolicited)  # a broken upstream: an answer nobody asked for

    server = await serve(handler)
    response = await pool.send(request(), server.endpoint, Timeouts(read=0.5))
    assert await read_all(response.body) == b"real"
    await asyncio.sleep(0.2)
    response = await pool.send(request(), server.endpoint, Timeouts(read=0.5))
    assert await read_all(response.body) == b"real"
