"""The ``body-limit`` plugin object, and the body wrapper that counts a chunked body.

A declared ``Content-Length`` is checked before a byte of the body is read: the server
already holds a client to the length it declared, so nothing more is needed. A chunked body
declares nothing; it is wrapped so that the transport, while streaming it upstream, meets
:class:`ContentTooLargeError` as soon as the bytes received pass the limit. The transport
then aborts the upstream connection without the terminating chunk, so the upstream sees a
broken request, never a complete one cut short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway_core import Binding, LocalResponse, RequestContext
from gateway_core.errors import RequestError
from gateway_core.messages import RequestBody
from gateway_plugin_body_limit.config import BodyLimitConfig


class ContentTooLargeError(RequestError):
    """The request body passed the route's limit while streaming (answered ``413``)."""

    status = 413
    code = "content_too_large"


def _message(limit: int) -> str:
    return f"the request body is larger than this route's limit of {limit} bytes"


class LimitedBody:
    """A :class:`RequestBody` that raises :class:`ContentTooLargeError` past ``limit`` bytes.

    The chunk that crosses the limit is not yielded, so at most ``limit`` bytes ever reach
    the upstream.
    """

    __slots__ = ("_inner", "_limit", "content_length", "received")

    def __init__(self, inner: RequestBody, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self.content_length: int | None = inner.content_length
        self.received = 0

    @property
    def consumed(self) -> bool:
        """Whether the wrapped body was already streamed (it streams once)."""
        return self._inner.consumed

    @consumed.setter
    def consumed(self, value: bool) -> None:
        self._inner.consumed = value

    async def chunks(self) -> AsyncIterator[bytes]:
        chunks = self._inner.chunks()
        try:
            async for chunk in chunks:
                self.received += len(chunk)
                if self.received > self._limit:
                    raise ContentTooLargeError(_message(self._limit))
                yield chunk
        finally:
            close = getattr(chunks, "aclose", None)  # an async generator: finish it now, not at GC
            if close is not None:
                await close()


class BodyLimit:
    """Refuses bodies larger than ``max_size``: at once by Content-Length, else mid-stream."""

    def __init__(self, config: BodyLimitConfig) -> None:
        self.config = config
        self._limit = config.max_size
        self._too_large = LocalResponse.error(413, ContentTooLargeError.code, _message(self._limit))

    @classmethod
    def from_binding(cls, config: BodyLimitConfig, binding: Binding) -> BodyLimit:
        return cls(config)

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        body = ctx.request.body
        if body is None or not self._limit:
            return None
        declared = body.content_length
        if declared is None:
            ctx.request.body = LimitedBody(body, self._limit)
        elif declared > self._limit:
            return self._too_large
        return None
