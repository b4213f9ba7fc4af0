"""uvicorn's httptools protocol, writing a response's head together with its first body part.

uvicorn writes a response's head and its body in two ``transport.write`` calls, so a small
proxied response costs two ``send`` system calls. This protocol hands uvicorn a transport
that holds the head until the next write (the first body part), until the response is
complete (HEAD, empty bodies), or until the connection closes, so head and body leave in
one system call. Interim responses (100 Continue) are never held. Measured with
``bench/proxy_bench.py``: 11-14 % more requests per second per worker. (Flushing at the
end of each loop turn instead, with ``call_soon``, gained only 3 %.)

The contract this adds: an app must send its first body message (possibly empty, with
``more_body``) when it wants the head on the wire; the proxy does. Everything else is
uvicorn's own, selected through its documented ``Config(http=...)`` extension point.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

JOIN_LIMIT = 16 * 1024
"""Bodies up to this size are joined to the held head; larger ones are written after it."""


class CoalescingTransport:
    """Wraps an asyncio transport: holds one write (a response head) until the next one."""

    __slots__ = ("_transport", "_held")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            if data[:10] == b"HTTP/1.1 1":
                self._transport.write(data)  # an interim response (100 Continue) goes out now
            else:
                self._held = bytes(data)
        else:
            self._held = None
            if len(data) <= JOIN_LIMIT:
                self._transport.write(held + bytes(data))
            else:  # no copy of a large body just to save a system call
                self._transport.writelines((held, data))

    def flush(self) -> None:
        """Write what is held now."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
