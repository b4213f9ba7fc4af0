"""Request mirroring: a copy of a request goes to other Services, fire-and-forget.

For each ``meta-native.io/mirror`` entry of a route, a sampled share of requests is copied
(method, target and headers as ``on_request`` plugins left them, and the body) to an
endpoint of the mirror's Service, its balancer's pick, through the gateway's transport.
The answer is read and discarded. Nothing here may delay, fail or alter the main request:
:meth:`Mirrors.start` only snapshots the head and, for a request with a body, wraps the body
in a :class:`TeeBody`; copies run as tasks of their own, whose errors are counted and
logged at debug level, never raised.

A body is copied as the main request streams it, and the copy is sent only once the body is
whole, with its exact ``Content-Length``: a mirror never receives a truncated body as
complete. A body longer than a mirror's ``max_body`` is not mirrored to it; a body the main
request did not stream to the end (the upstream answered early, the client went away) is
not mirrored at all.

Per worker at most :data:`MAX_IN_FLIGHT` copies and :data:`MAX_BODY_BYTES_IN_FLIGHT` bytes
of copied bodies are in flight; past either, copies are dropped (and counted) rather than
queued, so slow mirrors cost bounded memory.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import NamedTuple

from gateway_core.errors import UpstreamError, UpstreamTimeoutError
from gateway_core.manifests.upstream_policy import MirrorConfig
from gateway_core.messages import (
    Endpoint,
    Headers,
    RawHeaders,
    RequestBody,
    RequestContext,
    Timeouts,
    UpstreamRequest,
)
from gateway_core.routing.table import Backend
from gateway_core.transport.base import Transport

logger = logging.getLogger("gateway_core.mirror")

MAX_IN_FLIGHT = 256
"""Mirror requests in flight per worker; more are dropped (result ``too_busy``)."""
MAX_BODY_BYTES_IN_FLIGHT = 64 << 20
"""Bytes of copied request bodies held by mirror requests in flight per worker (64 MiB)."""

MirrorRecorder = Callable[[str, str], None]
"""Called with (``namespace/service`` of the mirror, result) once per mirrored copy."""

Mirror = tuple[MirrorConfig, Backend]


class Head(NamedTuple):
    """What a copy takes from the main request when mirroring starts."""

    method: str
    target: bytes
    headers: RawHeaders
    """A copy of the header list: later edits of the main request do not reach it."""
    has_host: bool
    """The client sent a Host (``ctx.host``), which the copy may keep."""


class Mirrors:
    """Sends request copies to mirror backends without ever delaying the main request.

    ``preserve_host`` follows the main request's rule: the copy keeps the client's Host,
    or (when False, or the client sent none) names the mirror endpoint. ``record`` counts
    each copy's result: ``ok`` (answered, any status), ``error``, ``timeout``,
    ``no_endpoint``, ``too_busy``, ``body_too_large`` or ``body_incomplete``.
    """

    def __init__(
        self, transport: Transport, *, preserve_host: bool = True, record: MirrorRecorder | None = None
    ) -> None:
        self._transport = transport
        self._preserve_host = preserve_host
        self._record = record
        self._tasks: set[asyncio.Task[None]] = set()
        self._body_bytes = 0
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Mirror requests being sent now."""
        return len(self._tasks)

    def start(self, mirrors: Sequence[Mirror], ctx: RequestContext) -> None:
        """Start copies of ``ctx.request`` to ``mirrors`` (returns at once)."""
        if self._closed:
            return
        chosen = [mirror for mirror in mirrors if _sampled(mirror[0].percent)]
        if not chosen:
            return
        request = ctx.request
        head = Head(request.method, request.target, list(request.headers.raw), bool(ctx.host))
        body = request.body
        if body is None:
            for config, backend in chosen:
                self.launch(config, backend, head, None)
            return
        length = body.content_length
        fitting: list[Mirror] = []
        for config, backend in chosen:
            if length is not None and length > config.max_body:
                self.count(backend, "body_too_large")
            else:
                fitting.append((config, backend))
        if fitting:
            request.body = TeeBody(body, self, fitting, head)

    def count(self, backend: Backend, result: str) -> None:
        """Record one copy's result."""
        if self._record is not None:
            self._record(backend.label, result)

    def launch(self, config: MirrorConfig, backend: Backend, head: Head, body: bytes | None) -> None:
        """Send one copy from a task of its own, unless the limits say drop it.

        The mirror's endpoint is its balancer's pick without a request context: mirror
        backends balance round robin, and a copy must not keep the request alive.
        """
        size = len(body) if body is not None else 0
        if (
            self._closed
            or len(self._tasks) >= MAX_IN_FLIGHT
            or (size and self._body_bytes + size > MAX_BODY_BYTES_IN_FLIGHT)
        ):
            self.count(backend, "too_busy")
            return
        endpoint = backend.balancer.pick(None, ())
        if endpoint is None:
            self.count(backend, "no_endpoint")
            return
        if self._preserve_host and head.has_host:  # the main request's rule (Pipeline._attempt)
            headers = Headers(head.headers)  # shared by the copies of one request: only read
        else:
            headers = Headers(list(head.headers))
            headers.set("host", endpoint.address)
        request = UpstreamRequest(head.method, head.target, headers, None if body is None else BufferedBody(body))
        self._body_bytes += size
        task = asyncio.get_running_loop().create_task(
            self._send(config, backend, request, endpoint, size), name=f"mirror-{backend.label}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, config: MirrorConfig, backend: Backend, request: UpstreamRequest, endpoint: Endpoint, size: int
    ) -> None:
        limit = config.timeout
        try:
            async with asyncio.timeout(limit):
                response = await self._transport.send(request, endpoint, Timeouts(limit, limit, limit))
                try:
                    while await response.body.read():
                        pass
                finally:
                    response.body.close()
        except (TimeoutError, UpstreamTimeoutError) as exc:
            result = "timeout"
            logger.debug("mirror request to %s (%s) timed out: %s", backend.label, endpoint, str(exc) or f"{limit:g}s")
        except UpstreamError as exc:
            result = "error"
            logger.debug("mirror request to %s (%s) failed: %s", backend.label, endpoint, exc)
        except Exception:  # a copy must never take anything down
            result = "error"
            logger.debug("mirror request to %s (%s) failed", backend.label, endpoint, exc_info=True)
        else:
            result = "ok"
        finally:
            self._body_bytes -= size
        self.count(backend, result)

    async def aclose(self) -> None:
        """Cancel copies still in flight; later ``start`` calls do nothing."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _sampled(percent: float) -> bool:
    return percent >= 100 or random.random() * 100.0 < percent


class BufferedBody:
    """A whole request body held in memory (a mirror's copy); it can be sent any number of times."""

    __slots__ = ("_data", "content_length", "consumed")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.content_length: int | None = len(data)
        self.consumed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.consumed = True
        if self._data:
            yield self._data


class TeeBody:
    """The main request's body, copied for mirrors as the main request streams it.

    The main request sees the inner body unchanged (``consumed`` included, so retries judge
    it as before). The copy starts the mirrors once it is whole: as soon as the declared
    length has arrived, or the inner body reports itself complete, or its stream ends. A copy
    longer than every mirror's ``max_body`` is dropped as it grows past the largest; a
    stream that stops short (or overshoots its declared length) is not mirrored.
    """

    __slots__ = ("_inner", "_mirrors", "_targets", "_head", "_parts", "_size", "_limit", "_state")

    def __init__(self, inner: RequestBody, mirrors: Mirrors, targets: Sequence[Mirror], head: Head) -> None:
        self._inner = inner
        self._mirrors = mirrors
        self._targets = targets
        self._head = head
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = max(config.max_body for config, _ in targets)
        self._state = _PENDING

    @property
    def content_length(self) -> int | None:
        """The inner body's declared length."""
        return self._inner.content_length

    @content_length.setter
    def content_length(self, value: int | None) -> None:
        self._inner.content_length = value

    @property
    def consumed(self) -> bool:
        """The inner body's: True once it was streamed."""
        return self._inner.consumed

    @consumed.setter
    def consumed(self, value: bool) -> None:
        self._inner.consumed = value

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._state != _PENDING:  # a second pass (a replayable inner body): no second copy
            async for chunk in self._inner.chunks():
                yield chunk
            return
        self._state = _COPYING
        declared = self._inner.content_length
        try:
            async for chunk in self._inner.chunks():
                if self._state == _COPYING:
                    self._copy(chunk, declared)
                yield chunk
            if self._state == _COPYING:
                if declared is None or self._size == declared:
                    self._finish()
                else:
                    self._give_up("body_incomplete")
        finally:
            if self._state == _COPYING:  # the stream failed or was abandoned before its end
                self._give_up("body_incomplete")

    def _copy(self, chunk: bytes, declared: int | None) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            self._give_up("body_too_large")
            return
        self._parts.append(chunk)
        if declared is not None:
            if self._size == declared:
                self._finish()  # whole now: do not wait for the stream's end (an early answer stops it)
            elif self._size > declared:
                self._give_up("body_incomplete")
        elif getattr(self._inner, "complete", False):  # the proxy's client body knows it has ended
            self._finish()

    def _finish(self) -> None:
        self._state = _DONE
        data = b"".join(self._parts)
        self._parts = []
        for config, backend in self._targets:
            if len(data) > config.max_body:
                self._mirrors.count(backend, "body_too_large")
            else:
                self._mirrors.launch(config, backend, self._head, data)

    def _give_up(self, result: str) -> None:
        self._state = _DONE
        self._parts = []
        for _, backend in self._targets:
            self._mirrors.count(backend, result)


_PENDING, _COPYING, _DONE = 0, 1, 2
