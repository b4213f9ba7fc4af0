"""One request on a client connection and the response to it, as ASGI messages.

``Exchange.receive`` hands the app the request body as it arrives (100 Continue when asked
for); ``Exchange.send`` frames the response: Content-Length, chunked for HTTP/1.1 clients,
close-delimited for HTTP/1.0 ones, nothing for HEAD, 204 and 304. The head is held until
the first body part so both leave in one write; it is checked for CR/LF smuggled in header
values with one scan of the whole head.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
from typing import Any, Protocol

Message = dict[str, Any]

JOIN_LIMIT = 16 * 1024
"""Bodies up to this size are copied behind the held head; larger ones are written after it."""


class Connection(Protocol):
    """What an exchange needs from its client connection."""

    loop: asyncio.AbstractEventLoop
    disconnected: bool
    write_paused: bool

    def write_raw(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None: ...

    def response_complete(self, exchange: Exchange) -> None: ...


_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NO_BODY_STATUS = frozenset({204, 304})


_LENGTH, _CODING, _CONNECTION = range(3)
_FRAMING_HEADERS = {b"content-length": _LENGTH, b"transfer-encoding": _CODING, b"connection": _CONNECTION}


@functools.lru_cache(maxsize=1024)
def header_name(name: bytes) -> bytes:
    """``name`` lowercased, after checking it is a token (RFC 9110 §5.1); cached, names repeat."""
    if not name or name.translate(None, _TOKEN):
        raise RuntimeError(f"invalid response header name {name!r}")
    return name.lower()


@functools.lru_cache(maxsize=256)
def status_line(status: int) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n`` for a status code."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


def error_response(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": code, "message": message}).encode()
    return (
        status_line(status)
        + b"content-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )


class Exchange:
    """One request on a connection and the response to it."""

    __slots__ = (
        "protocol",
        "scope",
        "keep_alive",
        "expect_continue",
        "body",
        "body_size",
        "body_complete",
        "body_delivered",
        "waiter",
        "started",
        "complete",
        "held_head",
        "chunked",
        "remaining",
        "head_only",
    )

    def __init__(self, protocol: Connection, scope: dict[str, Any], keep_alive: bool, expect_continue: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_complete = False
        self.body_delivered = False
        self.waiter: asyncio.Future[None] | None = None
        self.started = False
        self.complete = False
        self.held_head: bytes | None = None
        self.chunked = False
        self.remaining = -1  # declared Content-Length still to send; -1: not length-delimited
        self.head_only = scope["method"] == "HEAD"

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def receive(self) -> Message:
        protocol = self.protocol
        while True:
            if protocol.disconnected or self.complete:
                return {"type": "http.disconnect"}
            if not self.body_delivered and (self.body or self.body_complete):
                return self._take_body()
            if self.expect_continue and not self.started:
                self.expect_continue = False
                protocol.write_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
            protocol.resume_reading()
            self.waiter = protocol.loop.create_future()
            await self.waiter

    def _take_body(self) -> Message:
        body = self.body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self.body_size = 0
        if self.body_complete:
            self.body_delivered = True
        else:
            self.protocol.resume_reading()
        return {"type": "http.request", "body": data, "more_body": not self.body_complete}

    async def send(self, message: Message) -> None:
        protocol = self.protocol
        if protocol.write_paused and not protocol.disconnected:
            await protocol.drain()
        if protocol.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind}")
            self._start(message)
        elif kind == "http.response.body":
            if self.complete:
                raise RuntimeError("the response is already complete")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind}")

    def _start(self, message: Message) -> None:
        self.started = True
        self.expect_continue = False
        status: int = message["status"]
        parts = [status_line(status)]
        lines = 2  # the status line and the blank line ending the head
        length: bytes | None = None
        for name, value in message.get("headers", ()):
            lowered = header_name(name)
            special = _FRAMING_HEADERS.get(lowered)
            if special is not None:
                if special == _LENGTH:
                    length = value
                elif special == _CODING:
                    continue  # framing is ours
                elif b"close" in value.lower():
                    self.keep_alive = False
            parts += (lowered, b": ", value, b"\r\n")
            lines += 1
        if status in _NO_BODY_STATUS or status < 200:
            self.remaining = 0
        elif length is not None:
            self.remaining = int(length)
        elif self.head_only:
            self.remaining = 0
        elif self.scope["http_version"] == "1.1":
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
            lines += 1
        else:
            self.keep_alive = False  # an HTTP/1.0 client reads to the end of the connection
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        # Names are checked tokens; a value smuggling CR or LF (response splitting) shows up
        # as more line ends than the lines written. One scan of the head instead of one per value.
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
            raise RuntimeError("a response header value contains CR, LF or NUL")
        self.held_head = head

    def _body(self, data: bytes, more: bool) -> None:
        protocol = self.protocol
        if self.head_only:
            data = b""
        elif self.chunked:
            if data:
                data = b"%x\r\n%b\r\n" % (len(data), data)
            if not more:
                data += b"0\r\n\r\n"
        elif self.remaining >= 0:
            self.remaining -= len(data)
            if self.remaining < 0:
                protocol.abort()
                raise RuntimeError("response body longer than its Content-Length")
        head = self.held_head
        if head is not None:
            self.held_head = None
            if len(data) <= JOIN_LIMIT:
                protocol.write_raw(head + data)
            else:
                protocol.write_raw(head)
                protocol.write_raw(data)
        elif data:
            protocol.write_raw(data)
        if not more:
            self.complete = True
            if self.remaining > 0 and not self.head_only:
                protocol.abort()  # shorter than declared: the client must not take it as whole
                return
            protocol.response_complete(self)
