"""The upstream side of a proxied WebSocket: open it, exchange messages, close it.

Built on the ``websockets`` library's client connection (framing, masking, ping/pong,
the closing handshake, flow control). Its high-level ``connect()`` is not used because a
proxy needs what it does not offer: the client's ``Host`` and headers forwarded in order,
no redirect following (a 3xx is the upstream's answer, relayed to the client), no proxy
taken from the environment. So the handshake request is built here and sent through the
library's sans-I/O ``ClientProtocol`` on an asyncio connection to the chosen endpoint.

Every ``websockets`` exception is translated here: opening raises only
:class:`~gateway_core.errors.UpstreamError` subclasses (or returns the upstream's refusal
as an :class:`~gateway_core.messages.UpstreamResponse`), and an ended connection is a
:class:`Closed` value, never an exception. This module knows nothing of routes or plugins.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.datastructures import Headers as HandshakeHeaders
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
)
from websockets.frames import CloseCode
from websockets.http11 import Request
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI

from gateway_core.errors import (
    RequestError,
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway_core.messages import BytesBody, Endpoint, Headers, RawHeaders, Timeouts, UpstreamRequest, UpstreamResponse

logger = logging.getLogger("gateway_core.transport")

_HANDSHAKE_OWN = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
"""Request headers the upstream handshake sets itself (Host is placed first, the rest after)."""
_NOT_RELAYED = frozenset(
    {
        b"connection",
        b"upgrade",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"date",
    }
)
"""Headers of the upstream's 101 answer that belong to its hop (the client's 101 has its own)."""

CLOSE_TIMEOUT = 10.0
"""Seconds the closing handshake with the upstream may take before the connection is dropped."""
RECEIVE_QUEUE = 2
"""Frames from the upstream held before it stops being read (the library's default is 16)."""
KEEPALIVE_INTERVAL = 20.0
"""Seconds between the pings that keep the upstream connection known to be alive."""


@dataclass(frozen=True, slots=True)
class Closed:
    """How one side of a WebSocket ended.

    ``code`` is the close code of the frame received (or, when this side failed the
    connection itself, e.g. 1009 for a message too big, of the frame it sent); ``None``
    when the connection was dropped without a closing handshake (1006, abnormal closure).
    """

    code: int | None
    reason: str = ""


Message = str | bytes
"""A WebSocket message: text or binary."""


class UpstreamSocket:
    """An open WebSocket to one endpoint, after a successful handshake."""

    __slots__ = ("_connection", "endpoint", "subprotocol", "headers")

    def __init__(self, connection: ClientConnection, endpoint: Endpoint) -> None:
        self._connection = connection
        self.endpoint = endpoint
        self.subprotocol: str | None = connection.subprotocol
        """The subprotocol the upstream chose, if any."""
        response = connection.response
        raw = response.headers.raw_items() if response is not None else ()
        self.headers: RawHeaders = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in raw
            if name.lower().encode("latin-1") not in _NOT_RELAYED
        ]
        """The upstream's 101 headers worth relaying (cookies, custom headers), hop headers removed."""

    async def receive(self) -> Message | Closed:
        """The next message, or how the connection ended."""
        try:
            return await self._connection.recv()
        except ConnectionClosed as exc:
            return _closed(exc)

    async def send(self, message: Message) -> Closed | None:
        """Send one message (waits while the upstream reads slowly); how it ended if it had."""
        try:
            await self._connection.send(message)
        except ConnectionClosed as exc:
            return _closed(exc)
        return None

    async def close(self, code: int, reason: str = "") -> None:
        """The closing handshake with ``code`` and ``reason``; drops the connection if it stalls."""
        await self._connection.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (the upstream sees 1006)."""
        self._connection.transport.abort()


async def open_websocket(
    request: UpstreamRequest,
    endpoint: Endpoint,
    timeouts: Timeouts,
    *,
    subprotocols: Sequence[str] = (),
    max_message_size: int = 16 * 1024 * 1024,
) -> UpstreamSocket | UpstreamResponse:
    """Open a WebSocket to ``endpoint`` with the request's target and headers.

    Returns the open socket, or the upstream's HTTP answer when it refuses the upgrade
    (any status but 101; its body as read, up to the library's 1 MiB limit). Raises
    :class:`RequestError` for a header the handshake cannot carry, else only
    :class:`UpstreamError` subclasses: connect failures and timeouts (``timeouts.connect``),
    a handshake not answered within ``timeouts.read``, an invalid answer.
    """
    headers = _handshake_headers(request.headers)
    uri = WebSocketURI(secure=False, host=endpoint.host, port=endpoint.port, path="", query="")
    protocol = _ProxyHandshake(
        uri,
        request.target.decode("latin-1"),
        headers,
        subprotocols=[Subprotocol(name) for name in subprotocols] or None,
        max_size=max_message_size,
    )
    loop = asyncio.get_running_loop()

    def connection_factory() -> ClientConnection:
        return ClientConnection(
            protocol,
            ping_interval=KEEPALIVE_INTERVAL,
            ping_timeout=KEEPALIVE_INTERVAL,
            close_timeout=CLOSE_TIMEOUT,
            max_queue=RECEIVE_QUEUE,
        )

    try:
        async with asyncio.timeout(timeouts.connect):
            _, connection = await loop.create_connection(connection_factory, endpoint.host, endpoint.port)
    except TimeoutError:
        raise UpstreamTimeoutError(f"connecting to upstream {endpoint} timed out after {timeouts.connect:g}s") from None
    except socket.gaierror as exc:
        raise UpstreamConnectError(f"cannot resolve upstream {endpoint.host}: {exc.strerror}") from None
    except OSError as exc:
        raise UpstreamConnectError(f"cannot connect to upstream {endpoint}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(timeouts.read):
            await connection.handshake(None, None)
    except BaseException as exc:
        connection.transport.abort()
        if isinstance(exc, InvalidStatus):
            return _refusal(exc, endpoint)
        raise _handshake_error(exc, endpoint, timeouts) from None
    connection.start_keepalive()
    return UpstreamSocket(connection, endpoint)


class _ProxyHandshake(ClientProtocol):
    """The library's client protocol, sending the proxied request line and headers."""

    def __init__(
        self,
        uri: WebSocketURI,
        target: str,
        forwarded: HandshakeHeaders,
        *,
        subprotocols: Sequence[Subprotocol] | None,
        max_size: int,
    ) -> None:
        super().__init__(uri, subprotocols=subprotocols, max_size=max_size, logger=logger)
        self._target = target
        self._forwarded = forwarded

    def connect(self) -> Request:
        """The handshake request: the client's Host and headers in order, then the library's own."""
        own = super().connect().headers
        headers = HandshakeHeaders()
        forwarded = self._forwarded
        headers["Host"] = forwarded["Host"] if "Host" in forwarded else own["Host"]
        for name, value in forwarded.raw_items():
            if name != "host":
                headers[name] = value
        for name, value in own.raw_items():
            if name.lower() != "host":
                headers[name] = value
        return Request(self._target, headers)


def _handshake_headers(headers: Headers) -> HandshakeHeaders:
    """The client's headers for the upstream handshake, minus those the handshake sets itself."""
    out = HandshakeHeaders()
    host_seen = False
    try:
        for name, value in headers.items():
            if name == "host":
                if not host_seen:
                    host_seen = True
                    out[name] = value
            elif name not in _HANDSHAKE_OWN:
                out[name] = value
    except InvalidHeader as exc:
        raise RequestError(f"a header cannot be forwarded on a WebSocket handshake: {exc}") from None
    return out


def _refusal(exc: InvalidStatus, endpoint: Endpoint) -> UpstreamResponse:
    """The upstream's non-101 answer to the handshake, as an ordinary response."""
    response = exc.response
    raw: RawHeaders = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.raw_items()
    ]
    return UpstreamResponse(response.status_code, Headers(raw), BytesBody(bytes(response.body)), endpoint)


def _handshake_error(exc: BaseException, endpoint: Endpoint, timeouts: Timeouts) -> BaseException:
    """The gateway error for a failed upstream handshake (``exc`` itself if not a failure of it)."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError(f"upstream {endpoint} did not answer the WebSocket handshake in {timeouts.read:g}s")
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError):
        return UpstreamClosedError(f"upstream {endpoint} closed the connection during the WebSocket handshake")
    if isinstance(exc, InvalidHandshake):
        return UpstreamProtocolError(f"upstream {endpoint} answered an invalid WebSocket handshake: {exc}")
    if isinstance(exc, OSError):
        return UpstreamClosedError(f"upstream {endpoint} failed during the WebSocket handshake: {exc}")
    if isinstance(exc, Exception):  # anything else the library raised reading the answer
        return UpstreamProtocolError(f"upstream {endpoint} answered the WebSocket handshake badly: {exc!r}")
    return exc  # cancellation and the like: not the upstream's doing


def _closed(exc: ConnectionClosed) -> Closed:
    """How the connection ended: the peer's close frame, else ours if we failed it, else a drop."""
    if exc.rcvd is not None:
        return Closed(int(exc.rcvd.code), exc.rcvd.reason)
    if exc.sent is not None and exc.sent.code != CloseCode.NORMAL_CLOSURE:
        return Closed(int(exc.sent.code), exc.sent.reason)  # this side failed it: too big, protocol error
    return Closed(None)
