"""The upstream WebSocket client against real servers: a ``websockets`` server, and raw sockets
that answer the handshake badly on purpose. Nothing of the gateway is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from gateway_core.errors import (
    RequestError,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway_core.messages import Endpoint, Headers, Timeouts, UpstreamRequest, UpstreamResponse
from gateway_core.testing import free_port
from gateway_core.transport.websocket import Closed, UpstreamSocket, open_websocket

TIMEOUTS = Timeouts(connect=2.0, read=2.0, write=2.0)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def request(target: bytes = b"/chat?room=1", headers: list[tuple[bytes, bytes]] | None = None) -> UpstreamRequest:
    raw = headers if headers is not None else [(b"host", b"Chat.Example.COM:8080")]
    return UpstreamRequest("GET", target, Headers(raw), None)


async def opened(result: UpstreamSocket | UpstreamResponse) -> UpstreamSocket:
    assert isinstance(result, UpstreamSocket), result
    return result


@pytest.fixture
async def ws_server() -> AsyncIterator[tuple[Endpoint, list[Request]]]:
    """A ``websockets`` server: ``/close`` closes with 4002, ``/drop`` drops, ``/moved`` redirects; else echo."""
    seen: list[Request] = []

    def process_request(connection: ServerConnection, incoming: Request) -> Response | None:
        seen.append(incoming)
        if incoming.path == "/moved":
            response = connection.respond(302, "moved\n")
            response.headers["Location"] = "/elsewhere"
            return response
        return None

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        if path == "/close":
            await ws.close(4002, "server says bye")
        elif path == "/drop":
            ws.transport.abort()
        else:
            async for message in ws:
                await ws.send(message)

    async with serve(handler, "127.0.0.1", 0, process_request=process_request, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield Endpoint("127.0.0.1", port), seen


@pytest.fixture
async def raw_server() -> AsyncIterator[
    Callable[[Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]], Awaitable[Endpoint]]
]:
    """Starts raw servers whose connection handler the test writes."""
    servers: list[asyncio.Server] = []

    async def start(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> Endpoint:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_the_handshake_carries_the_clients_host_and_headers_in_order(
    ws_server: tuple[Endpoint, list[Request]],
) -> None:
    endpoint, seen = ws_server
    headers = [
        (b"host", b"Chat.Example.COM:8080"),
        (b"cookie", b"a=1"),
        (b"sec-websocket-key", b"the-clients-own-key=="),
        (b"sec-websocket-extensions", b"permessage-deflate"),
        (b"x-forwarded-for", b"203.0.113.9"),
    ]
    socket = await opened(await open_websocket(request(headers=headers), endpoint, TIMEOUTS))
    await socket.close(1000)
    (handshake,) = seen
    names = [name.lower() for name, _ in handshake.headers.raw_items()]
    assert handshake.path == "/chat?room=1"
    assert handshake.headers["Host"] == "Chat.Example.COM:8080"  # exactly as the client sent it
    assert names[:3] == ["host", "cookie", "x-forwarded-for"]
    assert names.count("sec-websocket-key") == 1
    assert handshake.headers["Sec-WebSocket-Key"] != "the-clients-own-key=="
    assert "sec-websocket-extensions" not in names, "no compression offered on the upstream hop"
    assert "user-agent" not in names, "the library adds no User-Agent of its own"


async def test_messages_flow_and_the_servers_close_is_reported(ws_server: tuple[Endpoint, list[Request]]) -> None:
    endpoint, _ = ws_server
    socket = await opened(await open_websocket(request(b"/echo"), endpoint, TIMEOUTS))
    assert await socket.send("text") is None
    assert await socket.receive() == "text"
    assert await socket.send(b"\x00bytes") is None
    assert await socket.receive() == b"\x00bytes"
    await socket.close(1000)

    closing = await opened(await open_websocket(request(b"/close"), endpoint, TIMEOUTS))
    assert await closing.receive() == Closed(4002, "server says bye")
    dropping = await opened(await open_websocket(request(b"/drop"), endpoint, TIMEOUTS))
    assert await dropping.receive() == Closed(None)


async def test_a_redirect_is_the_upstreams_answer_not_followed(ws_server: tuple[Endpoint, list[Request]]) -> None:
    endpoint, seen = ws_server
    answer = await open_websocket(request(b"/moved"), endpoint, TIMEOUTS)
    assert isinstance(answer, UpstreamResponse)
    assert answer.status == 302
    assert answer.headers.get("location") == "/elsewhere"
    assert answer.body.take() == (b"moved\n", True)
    assert [item.path for item in seen] == ["/moved"]


async def test_a_refusal_with_a_chunked_body_is_returned_whole(raw_server: Callable[..., Awaitable[Endpoint]]) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nX-Why: token\r\n\r\n3\r\nno!\r\n0\r\n\r\n"
        )
        await close(writer)

    answer = await open_websocket(request(), await raw_server(refuse), TIMEOUTS)
    assert isinstance(answer, UpstreamResponse)
    assert (answer.status, answer.headers.get("x-why"), answer.body.take()) == (401, "token", (b"no!", True))


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"", UpstreamClosedError),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            UpstreamProtocolError,
        ),
        (b"garbage\r\n\r\n", UpstreamProtocolError),
        (None, UpstreamTimeoutError),
    ],
    ids=["closed", "no-accept-key", "not-http", "silent"],
)
async def test_a_failed_handshake_is_a_gateway_error(
    raw_server: Callable[..., Awaitable[Endpoint]], reply: bytes | None, error: type[Exception]
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if reply is None:
            await reader.read()  # silent until the client gives up and goes
        else:
            writer.write(reply)
        await close(writer)

    endpoint = await raw_server(answer)
    with pytest.raises(error):
        await open_websocket(request(), endpoint, Timeouts(connect=2.0, read=0.5, write=2.0))


async def test_nothing_listening_is_a_connect_error() -> None:
    with pytest.raises(UpstreamConnectError):
        await open_websocket(request(), Endpoint("127.0.0.1", free_port()), TIMEOUTS)


async def test_a_header_the_handshake_cannot_carry_is_a_request_error(
    ws_server: tuple[Endpoint, list[Request]],
) -> None:
    endpoint, seen = ws_server
    with pytest.raises(RequestError):
        await open_websocket(request(headers=[(b"host", b"a"), (b"x-bad", b"\x01control")]), endpoint, TIMEOUTS)
    assert seen == [], "nothing was sent"
