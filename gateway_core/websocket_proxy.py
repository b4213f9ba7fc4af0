"""WebSocket proxying: a routed ``Upgrade: websocket`` request joins two WebSockets.

The proxy app matches the route and answers what it refuses on its own (no route, a
rejected route, a malformed head) through :meth:`WebSocketProxy.handshake_answer`. From
there this module runs the handshake: the ``on_request`` plugins (a denial is the plugin's
HTTP answer to the handshake: ASGI's ``websocket.http.response`` extension), the backend
and endpoint choice (canaries, the balancer), the ``on_upstream_request`` plugins, then the
upstream handshake. An upstream that refuses the upgrade has its HTTP answer relayed; one
that accepts it has its subprotocol and headers passed to the client's ``101``.

Then messages flow both ways, one task per direction, each awaiting the other side's send,
so a slow reader slows its writer instead of filling memory. The first side to end decides
how the other ends: a close code and reason are passed on as they were; a dropped
connection drops the other; no message either way for the idle timeout closes both (1001).
Pings are answered by each hop itself. ``on_log`` runs once the session is over.

``around_upstream`` plugins (retries, circuit breakers, timers) and mirrors do not apply:
they wrap one request and response, not a session. Must not block or buffer messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway_core.errors import GatewayError, NoEndpointError
from gateway_core.messages import (
    Headers,
    LocalResponse,
    Outcome,
    RequestContext,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway_core.metrics import GatewayMetrics
from gateway_core.pipeline import Pipeline
from gateway_core.proxy import Receive, ResponseAborted, Scope, Send, error_response, plugins_that_ran
from gateway_core.request_head import HOP_BY_HOP, RequestHead
from gateway_core.routing.canary import choose_backend
from gateway_core.routing.table import Backend, Route
from gateway_core.transport.websocket import Closed, Message, UpstreamSocket, open_websocket

logger = logging.getLogger("gateway_core.websocket")

GOING_AWAY = 1001
"""Close code for the idle timeout (both sides), and for an upstream whose client left early."""
_NO_STATUS = 1005
_ABNORMAL = 1006
_HTTP_SCHEMES = {b"ws": b"http", b"wss": b"https"}


class _Session:
    """What one handshake and session came to: for metrics, ``on_log`` and the idle timeout."""

    __slots__ = ("status", "error", "latency", "service", "upstream", "from_client", "to_client", "last_message")

    def __init__(self, service: str, now: float) -> None:
        self.status = 500
        self.error: str | None = None
        self.latency: float | None = None
        """Seconds the upstream handshake took."""
        self.service = service
        """The ``namespace/service`` label of the backend chosen."""
        self.upstream: UpstreamSocket | None = None
        self.from_client = 0
        self.to_client = 0
        """Message payload bytes relayed each way."""
        self.last_message = now
        """Loop time of the last message in either direction (the idle timeout's start)."""


@dataclass(frozen=True, slots=True)
class _ClientEnded:
    """The client closed (its code and reason; 1005 without a code) or its connection went (1006)."""

    code: int
    reason: str = ""


class _IdleTimeout:
    """No message either way for the idle timeout."""


_Ending = _ClientEnded | Closed | _IdleTimeout
_Answer = LocalResponse | UpstreamResponse
"""An HTTP answer to the handshake: the gateway's (or a plugin's), or the upstream's refusal."""


class WebSocketProxy:
    """Serves WebSocket handshakes on matched routes and relays the sessions."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        metrics: GatewayMetrics | None = None,
        preserve_host: bool = True,
        idle_timeout: float = 3600.0,
        max_message_size: int = 16 * 1024 * 1024,
    ) -> None:
        """``max_message_size`` (bytes) bounds upstream messages; the server bounds the client's."""
        self._pipeline = pipeline
        self._metrics = metrics
        self._preserve_host = preserve_host
        self.idle_timeout = idle_timeout
        self._max_message_size = max_message_size

    def handshake_answer(self, scope: Scope, send: Send) -> Send:
        """A ``send`` that answers the handshake with the HTTP response given to it.

        Uses ASGI's ``websocket.http.response`` extension; on a server without it, the
        handshake is closed instead (the server answers 403).
        """
        extensions = scope.get("extensions") or {}
        supported = "websocket.http.response" in extensions

        async def answer(message: dict[str, Any]) -> None:
            kind = message["type"]
            if supported:
                await send({**message, "type": "websocket." + kind})
            elif kind == "http.response.start":
                await send({"type": "websocket.close", "code": 1008})

        return answer

    async def __call__(self, route: Route, head: RequestHead, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the handshake of ``route`` and, once both sides accepted, relay the session."""
        first = await receive()  # websocket.connect, or a disconnect if the client already left
        if first["type"] != "websocket.connect":
            return
        ctx = _context(route, head, scope)
        session = _Session(route.service_label, asyncio.get_running_loop().time())
        try:
            outcome = await self._handshake(route, ctx, session)
            if isinstance(outcome, UpstreamSocket):
                session.status = 101
                await self._relay(outcome, receive, send, session)
            else:
                session.status = outcome.status
                await _send_answer(self.handshake_answer(scope, send), outcome)
        except ResponseAborted:
            session.error = "response_aborted"
            raise
        finally:
            await self._finished(route, ctx, session)

    async def _handshake(self, route: Route, ctx: RequestContext, session: _Session) -> UpstreamSocket | _Answer:
        """The plugins and the upstream handshake: an open upstream socket, or the HTTP answer."""
        pipeline = self._pipeline
        try:
            local = await pipeline.on_request(route, ctx) if route.on_request else None
            if local is None:
                backend = choose_backend(route, ctx) if route.canaries else route.backend
                session.service = backend.label
                started = time.perf_counter()
                opened = await self._open(route, backend, ctx)
                session.latency = time.perf_counter() - started
                if isinstance(opened, UpstreamResponse):  # the upstream refused the upgrade
                    if route.on_response:
                        await pipeline.on_response(route, ctx, opened)
                    return opened
                session.upstream = opened
                pipeline.endpoints.get(opened.endpoint).outstanding += 1
                if route.on_response:  # on the 101's headers; its status stays
                    accepted = UpstreamResponse(101, Headers(opened.headers), endpoint=opened.endpoint)
                    await pipeline.on_response(route, ctx, accepted)
                    opened.headers = accepted.headers.raw
                return opened
        except GatewayError as exc:
            local = error_response(route, ctx, exc, what="WebSocket route")
            session.error = exc.code
        except Exception:
            logger.exception("the WebSocket handshake failed on route %s", route.info.id)
            local = LocalResponse.error(500, "internal_error", "the gateway failed to handle the request")
            session.error = "internal_error"
        if route.on_local_response:
            # A copy: plugins keep prebuilt answers (a 401) and share them across requests.
            local = LocalResponse(local.status, local.body, list(local.headers))
            await pipeline.on_local_response(route, ctx, local)
        return local

    async def _finished(self, route: Route, ctx: RequestContext, session: _Session) -> None:
        """Release the upstream socket, count the handshake, run ``on_log``."""
        upstream = session.upstream
        if upstream is not None:
            upstream.abort()  # a no-op after a closing handshake; frees the socket otherwise
            self._pipeline.endpoints.get(upstream.endpoint).outstanding -= 1
        if self._metrics is not None:
            self._metrics.observe_request(route.info.id, session.service, session.status, session.latency)
        if route.on_log:
            outcome = Outcome(
                status=session.status,
                bytes_received=session.from_client,
                bytes_sent=session.to_client,
                duration=time.perf_counter() - ctx.started,
                upstream_latency=session.latency,
                endpoint=ctx.endpoint,
                error=session.error,
                plugins=plugins_that_ran(route, ctx.answered_by),
            )
            await self._pipeline.on_log(route, ctx, outcome)

    async def _open(self, route: Route, backend: Backend, ctx: RequestContext) -> UpstreamSocket | UpstreamResponse:
        """Pick the endpoint, run ``on_upstream_request``, and open the upstream WebSocket."""
        endpoint = backend.balancer.pick(ctx, ())
        if endpoint is None:
            raise NoEndpointError(backend.target.problem or f"no ready endpoint for {backend.label}")
        ctx.endpoint = endpoint
        request = ctx.request
        if not self._preserve_host or not ctx.host:
            request.headers.set("host", endpoint.address)
        for hook in route.on_upstream_request:
            await hook(ctx, request)
        subprotocols: list[str] = ctx.scope.get("subprotocols") or []
        return await open_websocket(
            request, endpoint, route.timeouts, subprotocols=subprotocols, max_message_size=self._max_message_size
        )

    async def _relay(self, upstream: UpstreamSocket, receive: Receive, send: Send, session: _Session) -> None:
        """Accept the client, relay messages until one side ends, then end the other."""
        accept = {"type": "websocket.accept", "subprotocol": upstream.subprotocol, "headers": upstream.headers}
        try:
            await send(accept)
        except OSError:  # the client left during the upstream handshake
            await upstream.close(GOING_AWAY)
            return
        to_upstream = asyncio.ensure_future(_client_to_upstream(receive, upstream, session))
        to_client = asyncio.ensure_future(_upstream_to_client(upstream, send, session))
        try:
            ending = await self._first_ending(to_upstream, to_client, session)
        finally:
            for task in (to_upstream, to_client):
                task.cancel()
            await asyncio.gather(to_upstream, to_client, return_exceptions=True)
        await _finish(ending, upstream, send)

    async def _first_ending(
        self, to_upstream: asyncio.Future[_Ending], to_client: asyncio.Future[_Ending], session: _Session
    ) -> _Ending:
        loop = asyncio.get_running_loop()
        while True:
            left = session.last_message + self.idle_timeout - loop.time()
            if left <= 0:
                return _IdleTimeout()
            done, _ = await asyncio.wait((to_upstream, to_client), timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if to_upstream in done:
                return to_upstream.result()
            if to_client in done:
                return to_client.result()


async def _client_to_upstream(receive: Receive, upstream: UpstreamSocket, session: _Session) -> _Ending:
    loop = asyncio.get_running_loop()
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            data: Message | None = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            session.from_client += _size(data)
            session.last_message = loop.time()
            closed = await upstream.send(data)
            if closed is not None:
                return closed
        elif kind == "websocket.disconnect":
            return _ClientEnded(int(message.get("code", _NO_STATUS)), message.get("reason") or "")


async def _upstream_to_client(upstream: UpstreamSocket, send: Send, session: _Session) -> _Ending:
    loop = asyncio.get_running_loop()
    while True:
        item = await upstream.receive()
        if isinstance(item, Closed):
            return item
        session.to_client += _size(item)
        session.last_message = loop.time()
        message = (
            {"type": "websocket.send", "text": item}
            if isinstance(item, str)
            else {"type": "websocket.send", "bytes": item}
        )
        try:
            await send(message)
        except OSError:  # the server says the client is gone; its disconnect tells how
            return _ClientEnded(_ABNORMAL)


async def _finish(ending: _Ending, upstream: UpstreamSocket, send: Send) -> None:
    """End the side that did not end first, as the first one ended."""
    if isinstance(ending, _ClientEnded):
        if ending.code == _ABNORMAL:
            upstream.abort()
        elif ending.code == _NO_STATUS:  # a close frame without a code
            await upstream.close(1000)
        else:
            await upstream.close(ending.code, ending.reason)
        return
    if isinstance(ending, _IdleTimeout):
        await _close_client(send, GOING_AWAY, "idle timeout")
        await upstream.close(GOING_AWAY, "idle timeout")
        return
    if ending.code is None:
        raise ResponseAborted("the upstream dropped the WebSocket connection")  # the client's is dropped too
    await _close_client(send, 1000 if ending.code == _NO_STATUS else ending.code, ending.reason)


async def _close_client(send: Send, code: int, reason: str) -> None:
    with contextlib.suppress(OSError):  # the client is already gone
        await send({"type": "websocket.close", "code": code, "reason": reason})


async def _send_answer(answer: Send, response: _Answer) -> None:
    """An HTTP answer to the handshake, framed by its length (hop-by-hop headers dropped)."""
    if isinstance(response, UpstreamResponse):
        body, _ = response.body.take()
        raw = response.headers.raw
    else:
        body, raw = response.body, response.headers
    headers = [item for item in raw if item[0] not in HOP_BY_HOP and item[0] != b"content-length"]
    if response.status not in (204, 304):
        headers.append((b"content-length", str(len(body)).encode()))
    await answer({"type": "http.response.start", "status": response.status, "headers": headers})
    await answer({"type": "http.response.body", "body": body})


def _context(route: Route, head: RequestHead, scope: Scope) -> RequestContext:
    """The request context of a handshake; ``X-Forwarded-Proto`` says ``http(s)``, not ``ws(s)``."""
    headers = [
        (name, _HTTP_SCHEMES.get(value, value) if name == b"x-forwarded-proto" else value)
        for name, value in head.headers
    ]
    secure = scope.get("scheme") in ("wss", "https")
    return RequestContext(
        scope=scope,
        method="GET",
        host=head.host,
        path=head.path,
        scheme="https" if secure else "http",
        client_ip=head.client_ip,
        peer_ip=head.peer_ip,
        route=route.info,
        request=UpstreamRequest("GET", head.target, Headers(headers), None),
    )


def _size(data: Message) -> int:
    if isinstance(data, bytes):
        return len(data)
    return len(data) if data.isascii() else len(data.encode())
