"""The proxy: a pure ASGI app that routes, runs the plugin phases, forwards and streams back.

Per request: check the head and build the upstream head (``request_head``), match the route
in the current table, run the pipeline, then relay the response. Bodies stream both ways;
a response that is already whole when its head arrives goes out in one write. Every error
the gateway answers itself is JSON (``{"error": code, "message": ...}``), never a traceback:
no route 404, rejected route or no endpoint 503, upstream failures 502, timeouts 504, bad
requests 400. A failure after the response started can only cut the connection; that is
done by raising :class:`ResponseAborted`, which the server's log filter keeps quiet.

No FastAPI, no pluggy, no per-request sorting or lookups beyond the table match.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any, Protocol

from gateway_core.errors import (
    BodyNotReplayableError,
    GatewayError,
    RequestError,
    RequestTimeoutError,
    UpstreamError,
)
from gateway_core.messages import (
    Headers,
    LocalResponse,
    Outcome,
    RawHeaders,
    RequestContext,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway_core.metrics import GatewayMetrics
from gateway_core.pipeline import Pipeline
from gateway_core.request_head import (
    HOP_BY_HOP,
    HeaderRules,
    RequestHead,
    TrustedProxies,
    header_rules,
    read_request_head,
)
from gateway_core.routing.table import Route, TableHolder
from gateway_core.tls.edge import HttpsRedirect, is_secure

logger = logging.getLogger("gateway_core.proxy")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_NO_ROUTE = "no_route"
_NO_CONTENT = frozenset({204, 304})
"""Statuses whose answers carry no Content-Length (RFC 9110 §8.6) and no body."""
_CONNECTION_OPTIONS = frozenset({b"keep-alive", b"close"})
"""Connection tokens that name no header (the usual case: nothing more to strip)."""


class WebSocketHandler(Protocol):
    """Serves a WebSocket handshake on a matched route (``gateway_core.websocket_proxy``)."""

    def handshake_answer(self, scope: Scope, send: Send) -> Send:
        """A ``send`` that answers the handshake with an HTTP response (a refusal)."""
        ...

    def __call__(self, route: Route, head: RequestHead, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Run the handshake and relay the session."""
        ...


class ResponseAborted(Exception):
    """The response had started when the upstream failed: the connection must be cut."""


class ClientDisconnected(RequestError):
    """The client went away while sending its request body."""

    status = 499
    code = "client_closed_request"


class ClientBody:
    """The client's request body, streamed from ASGI ``receive`` with a read timeout.

    It streams once. A second upstream attempt cannot send it again (it was never held in
    memory); that attempt fails with :class:`BodyNotReplayableError` instead of sending a
    request whose declared length no bytes follow.
    """

    __slots__ = ("content_length", "_receive", "_timeout", "received", "complete", "consumed")

    def __init__(self, receive: Receive, content_length: int | None, timeout: float) -> None:
        self.content_length = content_length
        self._receive = receive
        self._timeout = timeout
        self.received = 0
        self.complete = False
        self.consumed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.consumed:
            raise BodyNotReplayableError("the request body was already streamed to an upstream")
        self.consumed = True
        while not self.complete:
            try:
                async with asyncio.timeout(self._timeout):
                    message = await self._receive()
            except TimeoutError:
                raise RequestTimeoutError(f"the client sent no body data for {self._timeout:g}s") from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("the client closed the connection while sending the body")
            chunk: bytes = message.get("body", b"")
            self.received += len(chunk)
            if not message.get("more_body", False):
                self.complete = True
            if chunk:
                yield chunk


class _DateHeader:
    """The ``Date`` value, formatted at most once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = 0
        self._value = b""

    def value(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


def response_headers(raw: RawHeaders, date: _DateHeader) -> RawHeaders:
    """The upstream's headers minus hop-by-hop ones (and those Connection names), plus Date."""
    out: RawHeaders = []
    connection: bytes | None = None
    has_date = False
    for name, value in raw:
        if name in HOP_BY_HOP:
            if name == b"connection":
                connection = value
            continue
        if name == b"date":
            has_date = True
        out.append((name, value))
    if connection is not None:
        named = {token.strip().lower() for token in connection.split(b",")} - _CONNECTION_OPTIONS
        if named:
            out = [item for item in out if item[0] not in named]
    if not has_date:
        out.append((b"date", date.value()))
    return out


class ProxyApp:
    """The proxy listener's ASGI app."""

    def __init__(
        self,
        *,
        tables: TableHolder,
        pipeline: Pipeline,
        metrics: GatewayMetrics | None = None,
        trusted_proxies: TrustedProxies | None = None,
        read_timeout: float = 30.0,
        other: ASGIApp | None = None,
        websocket: WebSocketHandler | None = None,
        https_redirect: HttpsRedirect | None = None,
    ) -> None:
        """``other`` receives every non-HTTP scope except WebSocket (the lifespan, usually).

        ``websocket`` serves WebSocket handshakes on matched routes; without it they are refused.
        ``https_redirect`` redirects plain-HTTP requests for hosts with a certificate to HTTPS.
        """
        self._tables = tables
        self._pipeline = pipeline
        self._metrics = metrics
        self._trusted = trusted_proxies or TrustedProxies()
        self._read_timeout = read_timeout
        self._other = other
        self._websocket = websocket
        self._https_redirect = https_redirect
        self._date = _DateHeader()
        self._stripped: frozenset[bytes] = frozenset()
        self._rules: HeaderRules = header_rules()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = self._websocket
        socket_send: Send | None = None  # set for a WebSocket handshake: the socket's own send
        if scope["type"] != "http":
            if scope["type"] != "websocket" or websocket is None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1003})  # no WebSocket proxying here
                elif self._other is not None:
                    await self._other(scope, receive, send)
                return
            socket_send, send = send, websocket.handshake_answer(scope, send)  # refusals below answer in HTTP
        tables = self._tables
        table = tables.current
        if table.stripped_headers is not self._stripped:  # a new table owns other headers
            self._rules = header_rules(table.stripped_headers)
            self._stripped = table.stripped_headers
        try:
            head = read_request_head(scope, self._trusted, self._rules)
        except RequestError as exc:
            await self._send_local(send, LocalResponse.error(exc.status, exc.code, str(exc)))
            self._record(None, exc.status, None)
            return
        route = table.match(head.host, head.path)
        if route is None:
            if not tables.loaded:
                await self._send_local(send, LocalResponse.error(503, "not_ready", "the gateway is starting"))
                self._record(None, 503, None)
                return
            await self._send_local(send, LocalResponse.error(404, _NO_ROUTE, "no route matches this request"))
            self._record(None, 404, None)
            return
        if route.unavailable is not None:
            await self._send_local(
                send, LocalResponse.error(503, "route_unavailable", "this route's configuration was rejected")
            )
            self._record(route, 503, None)
            return
        redirect = self._https_redirect
        if redirect is not None and table.certificates and not is_secure(head.proto):
            answer = redirect.answer(
                table.certificates,
                route.spec.tls.ssl_redirect,
                head.host,
                head.path,
                head.target,
                websocket=socket_send is not None,
            )
            if answer is not None:  # a TLS host asked for over plain HTTP
                await self._send_local(send, answer)
                self._record(route, answer.status, None)
                return
        if socket_send is not None and websocket is not None:
            await websocket(route, head, scope, receive, socket_send)
            return
        await self._forward(route, head, scope, receive, send)

    async def _forward(self, route: Route, head: RequestHead, scope: Scope, receive: Receive, send: Send) -> None:
        body = ClientBody(receive, head.content_length, self._read_timeout) if head.has_body else None
        request = UpstreamRequest(scope["method"], head.target, Headers(head.headers), body)
        ctx = RequestContext(
            scope=scope,
            method=scope["method"],
            host=head.host,
            path=head.path,
            scheme=scope.get("scheme", "http"),
            client_ip=head.client_ip,
            peer_ip=head.peer_ip,
            route=route.info,
            request=request,
        )
        pipeline = self._pipeline
        status = 500
        sent = 0
        latency: float | None = None
        error: str | None = None
        upstream: UpstreamResponse | None = None  # what call_upstream returned: its endpoint's try ends last
        try:
            local: LocalResponse | None = None
            response: UpstreamResponse | None = None
            try:
                local = await pipeline.on_request(route, ctx) if route.on_request else None
                if local is None:
                    upstream_started = time.perf_counter()
                    response = upstream = await pipeline.call_upstream(route, ctx)
                    latency = time.perf_counter() - upstream_started
                    if route.on_response:
                        await pipeline.on_response(route, ctx, response)
            except GatewayError as exc:  # from the upstream call or a plugin: its own status
                if response is not None:
                    response.body.close()
                    response = None
                local = error_response(route, ctx, exc)
                error = exc.code
            except BaseException:
                if response is not None:
                    response.body.close()
                raise
            if response is not None:
                try:
                    status = response.status
                    sent = await self._relay(response, receive, send, body)
                except UpstreamError as exc:  # failed before the head was sent
                    response.body.close()
                    response = None
                    local = error_response(route, ctx, exc)
                    error = exc.code
            if response is None:
                assert local is not None
                if route.on_local_response:
                    # A copy: plugins keep prebuilt answers (a 401) and share them across requests.
                    local = LocalResponse(local.status, local.body, list(local.headers))
                    await pipeline.on_local_response(route, ctx, local)
                status = local.status
                sent = await self._send_local(send, local)
        except ResponseAborted:
            error = "response_aborted"
            raise
        finally:
            if upstream is not None:
                pipeline.finished(upstream)
            self._record(route, status, latency, ctx.service)
            if route.on_log:
                outcome = Outcome(
                    status=status,
                    bytes_received=body.received if body is not None else 0,
                    bytes_sent=sent,
                    duration=time.perf_counter() - ctx.started,
                    upstream_latency=latency,
                    endpoint=ctx.endpoint,
                    error=error,
                    plugins=plugins_that_ran(route, ctx.answered_by),
                )
                await pipeline.on_log(route, ctx, outcome)

    async def _relay(self, response: UpstreamResponse, receive: Receive, send: Send, body: ClientBody | None) -> int:
        """Send the response head, then its body as it arrives; bytes of body sent.

        Raises the upstream's error if its body already failed before the head went out (the
        caller answers 502/504 instead); after that, a failure cuts the connection.
        """
        stream = response.body
        data, done = stream.take()
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": response_headers(response.headers.raw, self._date),
            }
        )
        if done:
            await send({"type": "http.response.body", "body": data})
            return len(data)
        watcher = None
        if body is None or body.complete:
            watcher = asyncio.ensure_future(_close_on_disconnect(receive, stream.close))
        sent = 0
        try:
            # The first body message goes out even when empty: it puts the head on the wire.
            await send({"type": "http.response.body", "body": data, "more_body": True})
            sent += len(data)
            while chunk := await stream.read():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
        except UpstreamError as exc:
            logger.warning(
                "upstream failed mid-response (%s): %s; closing the client connection", response.endpoint, exc
            )
            raise ResponseAborted(str(exc)) from None
        finally:
            stream.close()
            if watcher is not None:
                watcher.cancel()
        await send({"type": "http.response.body", "body": b""})
        return sent

    async def _send_local(self, send: Send, response: LocalResponse) -> int:
        headers = [item for item in response.headers if item[0] != b"content-length"]
        if response.status not in _NO_CONTENT:
            headers.append((b"content-length", str(len(response.body)).encode()))
        headers.append((b"date", self._date.value()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        return len(response.body)

    def _record(self, route: Route | None, status: int, latency: float | None, service: str | None = None) -> None:
        """Count the request; ``service`` is the Service that served it when not the route's own (a canary)."""
        metrics = self._metrics
        if metrics is not None:
            if route is None:
                metrics.observe_request("", "", status, None)
            else:
                label = route.service_label
                if service is not None and service != route.info.service:
                    label = f"{route.info.namespace}/{service}"
                metrics.observe_request(route.info.id, label, status, latency)


async def _close_on_disconnect(receive: Receive, close: Callable[[], None]) -> None:
    """Close the upstream stream when the client disconnects mid-response."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            close()
            return


def error_response(route: Route, ctx: RequestContext, exc: GatewayError, *, what: str = "route") -> LocalResponse:
    """The gateway's JSON answer for ``exc`` (upstream failures logged with the route and endpoint)."""
    if isinstance(exc, UpstreamError):
        logger.warning(
            "upstream error on %s %s (%s): %s",
            what,
            route.info.id,
            ctx.endpoint or route.service_label,
            exc,
            extra={"route": route.info.id, "error": exc.code},
        )
    response = LocalResponse.error(exc.status, exc.code, public_message(exc))
    if exc.headers:
        extra = Headers(response.headers)  # validates the values: no CR/LF from an error
        for name, value in exc.headers:
            extra.add(name, value)
    return response


def plugins_that_ran(route: Route, answered_by: str | None) -> tuple[str, ...]:
    """The route's plugins in run order, up to the one that answered the client (if one did)."""
    names = route.plugin_names
    if answered_by is None:
        return names
    return names[: names.index(answered_by) + 1]


def public_message(exc: GatewayError) -> str:
    """What the client is told: the category, not internal addresses."""
    messages = {
        "no_endpoint": "no upstream endpoint is available for this route",
        "upstream_connect_failed": "the upstream could not be reached",
        "upstream_closed": "the upstream closed the connection",
        "upstream_protocol_error": "the upstream sent an invalid response",
        "upstream_timeout": "the upstream did not answer in time",
    }
    return messages.get(exc.code, str(exc) if exc.public else "the gateway could not complete the request")
