"""Handing a client connection that asks for a WebSocket to the server's WebSocket protocol.

The proxy listener's HTTP protocol (``server_protocol``) parses the request head; when it is
a WebSocket handshake, the connection changes hands, as in uvicorn's own HTTP protocols:
the head is written out again and fed to the protocol class uvicorn was configured with
(``Config(ws=...)``, its ``ws_protocol_class``), which then owns the socket, runs the
handshake and calls the same ASGI app with a ``websocket`` scope. So the proxy stays a pure
ASGI app and WebSocket framing is the ``websockets`` library's, not ours. The class given
is :class:`GatewayWebSocketProtocol`: uvicorn's, with one mend.

Must not interpret the request beyond deciding that it is a handshake.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

RawHeaders = list[tuple[bytes, bytes]]

ABNORMAL_CLOSURE = 1006
"""The close code of a connection that ended without a closing handshake."""


def websocket_handshake(method: bytes, target: bytes, headers: RawHeaders) -> bytes | None:
    """The request head to replay to the WebSocket protocol, or None if this is no handshake.

    A handshake is a ``GET`` whose ``Upgrade`` is ``websocket`` and whose ``Connection``
    lists ``upgrade`` (RFC 6455 §4.1); the WebSocket protocol checks the rest (key, version)
    and answers 400 itself when they are wrong. ``headers`` have lowercase names.
    """
    if method != b"GET":
        return None
    upgrade = connection = False
    for name, value in headers:
        if name == b"upgrade":
            upgrade = upgrade or value.strip().lower() == b"websocket"
        elif name == b"connection":
            connection = connection or any(token.strip().lower() == b"upgrade" for token in value.split(b","))
    if not (upgrade and connection):
        return None
    lines = [b"GET ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def hand_over(
    transport: asyncio.Transport, config: Any, server_state: Any, app_state: dict[str, Any], data: bytes
) -> None:
    """Make a WebSocket protocol the owner of ``transport`` and feed it ``data`` (head and any more)."""
    protocol: asyncio.Protocol = config.ws_protocol_class(config=config, server_state=server_state, app_state=app_state)
    protocol.connection_made(transport)
    protocol.data_received(data)
    transport.set_protocol(protocol)


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (on the ``websockets`` library's sans-I/O core), with two mends.

    - A connection lost without a closing handshake is reported to the app as 1006
      (abnormal closure, RFC 6455 §7.1.5), so the proxy can pass the drop on as a drop.
      uvicorn 0.54 reports 1005 (no status), which is also what an empty close frame gives.
    - A handshake answered with an HTTP response (ASGI's ``websocket.http.response``: the
      gateway's 401, 404, 502 ...) counts as complete. uvicorn 0.54 logged "ASGI callable
      returned without completing handshake" at ERROR level for each, though the answer
      went out.
    """

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handshake_complete and not self.close_sent and self.conn.close_rcvd is None:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": ABNORMAL_CLOSURE})  # read first
        super().connection_lost(exc)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True
