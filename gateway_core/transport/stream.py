"""A response body arriving from an upstream connection, handed out as a ``ResponseBody``.

The connection's parser feeds it; the proxy takes what is buffered at once (a small
response is usually whole when its head arrives) or reads chunk by chunk. Past
``HIGH_WATER`` buffered bytes the connection stops reading its socket, and resumes below
``LOW_WATER``: a slow client slows the upstream instead of filling memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from gateway_core.errors import UpstreamError

HIGH_WATER = 256 * 1024
"""Buffered response bytes above which the upstream socket stops being read."""
LOW_WATER = 64 * 1024
"""Buffered response bytes below which reading resumes."""


class StreamSource(Protocol):
    """The connection a stream reads from."""

    loop: asyncio.AbstractEventLoop

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None: ...


class ResponseStream:
    """One response on one connection: its head, then its body as it arrives."""

    __slots__ = ("_connection", "_chunks", "_buffered", "_waiter", "_error", "done")

    def __init__(self, connection: StreamSource) -> None:
        self._connection = connection
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self.done = False

    # Producer side (the connection's parser callbacks).
    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > HIGH_WATER:
            self._connection.pause_reading()
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, error: UpstreamError) -> None:
        if not self.done:
            self._error = error
            self.done = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # Consumer side (ResponseBody).
    def take(self) -> tuple[bytes, bool]:
        chunks = self._chunks
        if not chunks:
            data = b""
        elif len(chunks) == 1:
            data = chunks.popleft()
        else:
            data = b"".join(chunks)
            chunks.clear()
        if self._buffered:
            self._buffered = 0
            self._connection.resume_reading()
        if self._error is not None:
            raise self._error
        return data, self.done

    async def read(self) -> bytes:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < LOW_WATER:
                    self._connection.resume_reading()
                return chunk
            if self._error is not None:
                raise self._error
            if self.done:
                return b""
            self._waiter = self._connection.loop.create_future()
            await self._waiter

    def close(self) -> None:
        self._chunks.clear()
        self._buffered = 0
        if not self.done:
            self.done = True
            self._wake()  # a pending read() returns b"" now
            self._connection.abort()
