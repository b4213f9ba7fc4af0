"""One pooled upstream connection: HTTP/1.1 over an asyncio protocol, parsed by llhttp.

An :class:`UpstreamConnection` serves one request at a time: it frames the request
(Content-Length or chunked, never copied from the client), streams the body while waiting
for the response head (an upstream may answer early), and hands the response body out as a
:class:`ResponseStream`. The stream buffers at most ``HIGH_WATER`` bytes before the socket
stops being read, so a slow client slows the upstream instead of filling memory. When the
response is whole, the connection goes back to its pool or closes.

This module must not know about routes or plugins; it moves bytes to one endpoint.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools

from gateway_core.errors import (
    UpstreamClosedError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway_core.messages import (
    Endpoint,
    Headers,
    RawHeaders,
    RequestBody,
    Timeouts,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway_core.transport.stream import ResponseStream


class ConnectionOwner(Protocol):
    """What a connection needs from its pool."""

    keep_alive: bool

    def release(self, connection: UpstreamConnection) -> None:
        """Take back a connection whose response is whole (keep it idle or close it)."""

    def forget(self, connection: UpstreamConnection) -> None:
        """Drop a closed connection from every list."""

    def watch(self, connection: UpstreamConnection) -> None:
        """Check this connection's read deadline until its response is whole."""

    def unwatch(self, connection: UpstreamConnection) -> None:
        """Stop checking its read deadline."""


_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_CONTENT_LENGTH_ZERO = b"content-length: 0\r\n"
_CONNECTION_CLOSE = b"connection: close\r\n"


_REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Idempotent methods (RFC 9110 §9.2.2): the only ones sent again after a stale connection."""


def _retrieve(task: asyncio.Task[bool]) -> None:
    """Consume a cancelled body writer's outcome so nothing is reported as unretrieved."""
    if not task.cancelled():
        task.exception()


class StaleConnectionError(Exception):
    """A reused connection closed before answering a request that is safe to send again."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to one endpoint, serving one request at a time."""

    def __init__(self, pool: ConnectionOwner, endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.loop = loop
        self.closed = False
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._reset_parser = False
        self._stream: ResponseStream | None = None
        self._head_waiter: asyncio.Future[UpstreamResponse] | None = None
        self._received_any = False
        self._head_only = False
        self._request_written = False
        self._close_delimited = False
        self._informational = False
        self._status_headers: RawHeaders = []
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._read_timeout = 0.0
        self._last_read = 0.0

    # --- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a registered subclass

    def data_received(self, data: bytes) -> None:
        if self._stream is None:
            # Bytes while no request is outstanding: the upstream is confused, and parsing
            # them would swallow the next real response. This connection is done.
            self.abort()
            return
        self._last_read = self.loop.time()
        self._received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamProtocolError("upstream switched protocols unexpectedly"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"invalid HTTP response from upstream: {exc}"))
        if self._reset_parser:
            self._reset_parser = False
            self._parser = httptools.HttpResponseParser(self)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._unwatch_deadline()
        self.pool.forget(self)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        stream = self._stream
        if stream is None:
            return
        self._stream = None
        if self._head_waiter is not None:
            # Closed before the response head: maybe a stale keep-alive connection.
            reason = f"upstream {self.endpoint} closed the connection before responding"
            self._resolve_head(error=UpstreamClosedError(reason))
        elif self._close_delimited:
            stream.finish()
        else:
            stream.fail(UpstreamClosedError(f"upstream {self.endpoint} closed the connection mid-response"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- httptools callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._stream is None:
            self.abort()  # a second response in the same read: stray bytes (see data_received)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._status_headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        headers, self._status_headers = self._status_headers, []
        if status < 200:
            self._informational = True  # 100 Continue, 103 Early Hints: wait for the final one
            return
        stream = self._stream
        if stream is None:
            return
        delimited = status in (204, 304)
        for name, _ in headers:
            if name == b"content-length" or name == b"transfer-encoding":
                delimited = True
                break
        self._close_delimited = not delimited
        response = UpstreamResponse(status=status, headers=Headers(headers), body=stream, endpoint=self.endpoint)
        self._resolve_head(response=response)
        if self._head_only:
            # A response to HEAD has no body whatever its headers say; llhttp cannot be
            # told so from here, so this parser is replaced once the callback returns.
            self._reset_parser = True
            self._complete(keep_alive=parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        stream = self._stream
        if stream is not None:
            stream.feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._stream is not None:
            self._complete(keep_alive=self._parser.should_keep_alive())

    # --- exchange ---------------------------------------------------------------------
    async def exchange(self, request: UpstreamRequest, timeouts: Timeouts, *, reused: bool) -> UpstreamResponse:
        transport = self._transport
        assert transport is not None
        body = request.body
        self._stream = ResponseStream(self)
        head_waiter: asyncio.Future[UpstreamResponse] = self.loop.create_future()
        self._head_waiter = head_waiter
        self._received_any = False
        self._head_only = request.method == "HEAD"
        self._request_written = False
        self._close_delimited = False
        transport.write(self._serialize_head(request, body))
        if body is None:
            self._request_written = True
            self._watch_deadline(timeouts.read)
            try:
                return await head_waiter
            except UpstreamClosedError:
                if reused and request.method in _REPLAYABLE_METHODS and not self._received_any:
                    raise StaleConnectionError() from None
                raise
            except asyncio.CancelledError:
                self._abandon(head_waiter)
                raise
        return await self._exchange_with_body(body, head_waiter, timeouts)

    async def _exchange_with_body(
        self, body: RequestBody, head_waiter: asyncio.Future[UpstreamResponse], timeouts: Timeouts
    ) -> UpstreamResponse:
        """Stream the body while waiting for the head: an upstream may answer early (413)."""
        writer = self.loop.create_task(self._write_body(body, timeouts))
        try:
            await asyncio.wait((head_waiter, writer), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            writer.cancel()
            self._abandon(head_waiter)
            raise
        if not writer.done():
            # The head came first: stop sending. The request was not fully written, so the
            # connection closes after this response instead of returning to the pool.
            writer.cancel()
            writer.add_done_callback(_retrieve)
            return head_waiter.result()
        error = writer.exception()
        if error is not None:
            self._abandon(head_waiter)
            raise error
        if self._head_waiter is not None:
            self._watch_deadline(timeouts.read)
        try:
            return await head_waiter
        except asyncio.CancelledError:
            self._abandon(head_waiter)
            raise

    def _abandon(self, head_waiter: asyncio.Future[UpstreamResponse]) -> None:
        """Drop the exchange half-way (the client body failed): close, retrieve any result."""
        self._head_waiter = None
        self._stream = None
        self.abort()
        if head_waiter.done():
            if not head_waiter.cancelled():
                head_waiter.exception()
        else:
            head_waiter.cancel()

    def _serialize_head(self, request: UpstreamRequest, body: RequestBody | None) -> bytes:
        parts = [request.method.encode("ascii"), b" ", request.target, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            parts += (name, b": ", value, b"\r\n")
        if body is not None:
            if body.content_length is None:
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                parts += (b"content-length: ", str(body.content_length).encode("ascii"), b"\r\n")
        elif request.method in _METHODS_WITH_BODY:
            parts.append(_CONTENT_LENGTH_ZERO)
        if not self.pool.keep_alive:
            parts.append(_CONNECTION_CLOSE)
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _write_body(self, body: RequestBody, timeouts: Timeouts) -> bool:
        """Stream the body upstream; False if the upstream answered or hung up first."""
        transport = self._transport
        assert transport is not None
        chunked = body.content_length is None
        async for chunk in body.chunks():
            if self.closed or self._head_waiter is None:
                return False
            if chunked:
                if chunk:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                transport.write(chunk)
            if self._write_paused:
                await self._drain(timeouts.write)
        if self.closed:
            return False
        if chunked:
            transport.write(b"0\r\n\r\n")
        self._request_written = True  # set here: the response may complete before the caller resumes
        return True

    async def _drain(self, limit: float) -> None:
        self._drain_waiter = waiter = self.loop.create_future()
        try:
            await asyncio.wait_for(waiter, limit)
        except TimeoutError:
            self.abort()
            raise UpstreamTimeoutError(f"upstream {self.endpoint} stopped reading the request body") from None
        finally:
            self._drain_waiter = None

    def _resolve_head(self, *, response: UpstreamResponse | None = None, error: UpstreamError | None = None) -> None:
        waiter = self._head_waiter
        if waiter is None:
            return
        self._head_waiter = None
        if waiter.done():
            return
        if response is not None:
            waiter.set_result(response)
        else:
            assert error is not None
            waiter.set_exception(error)

    def _complete(self, *, keep_alive: bool) -> None:
        """The response is whole: hand the connection back or close it."""
        stream = self._stream
        self._stream = None
        self._unwatch_deadline()
        if self._read_paused:
            self._read_paused = False
            if self._transport is not None:
                self._transport.resume_reading()
        if keep_alive and self._request_written and self.pool.keep_alive:
            self.pool.release(self)
        else:
            self.abort()
        if stream is not None:
            stream.finish()

    def _fail(self, error: UpstreamError) -> None:
        stream = self._stream
        self._stream = None
        self._resolve_head(error=error)
        if stream is not None:
            stream.fail(error)
        self.abort()

    # --- flow control and timers --------------------------------------------------------
    def pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None and not self.closed:
            self._read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and self._transport is not None and not self.closed:
            self._read_paused = False
            self._last_read = self.loop.time()
            self._transport.resume_reading()

    def _watch_deadline(self, timeout: float) -> None:
        self._read_timeout = timeout
        self._last_read = self.loop.time()
        self.pool.watch(self)

    def check_deadline(self, now: float) -> bool:
        """Fail the exchange if the upstream was silent past the read timeout; False once idle."""
        if self._stream is None:
            return False
        if self._read_paused:
            self._last_read = now  # the client is slow, not the upstream
        elif now - self._last_read >= self._read_timeout:
            self._fail(UpstreamTimeoutError(f"upstream {self.endpoint} did not answer within {self._read_timeout:g}s"))
            return False
        return True

    def _unwatch_deadline(self) -> None:
        self.pool.unwatch(self)

    def abort(self) -> None:
        """Close the connection now, dropping anything unsent."""
        if not self.closed and self._transport is not None:
            self._transport.abort()
        self.closed = True
