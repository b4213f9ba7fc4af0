"""The proxy listener's HTTP/1.1 protocol: llhttp parsing, ASGI calls, one write per response.

uvicorn hosts the proxy (sockets, workers' lifecycle, graceful shutdown) and takes this
class through its documented ``Config(http=...)`` extension point. Written for the proxy's
hot path, it differs from uvicorn's own httptools protocol where the bench showed cost:

- a response head is held until the first body part, so head and body leave in one
  ``send`` system call (uvicorn writes them separately);
- keep-alive idleness is checked by one sweep per second over the server's connections,
  not by a timer armed and cancelled per request (about 1.4 µs each on this path);
- one task per connection serves its requests in turn, instead of a task per request;
- no per-request ``asyncio.Event``, header regexes or default-header copies.

It also closes gaps that matter at the edge: the request head is limited in size (431) and
in time (408, against slow-header clients), and malformed requests get the gateway's JSON
400, like every other error it answers itself.

Measured with ``bench/proxy_bench.py`` (see the bench docs page): a hello-world ASGI app
answered 52.6k req/s on uvicorn's protocol and 109k on a minimal llhttp protocol on one
worker; this protocol carries most of that difference to the proxy.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httptools

from gateway_core.proxy import ResponseAborted
from gateway_core.server_exchange import Exchange, error_response
from gateway_core.server_websocket import hand_over, websocket_handshake

logger = logging.getLogger("gateway_core.server")

ASGIApp = Callable[..., Any]

MAX_HEAD_BYTES = 64 * 1024
"""Largest request line plus headers accepted (431 beyond)."""
BODY_HIGH_WATER = 64 * 1024
"""Buffered request-body bytes above which reading from the client pauses."""
SWEEP_INTERVAL = 1.0
"""Seconds between keep-alive and header-timeout checks."""


class GatewayHttpProtocol(asyncio.Protocol):
    """One client connection of the proxy listener."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        head_timeout: float = 30.0,
        write_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self.app: ASGIApp = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.keep_alive_timeout = float(config.timeout_keep_alive)
        self.head_timeout = head_timeout
        self.write_timeout = write_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.scheme = "http"
        self.disconnected = False
        self.write_paused = False
        self.read_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.current: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.last_activity = self.loop.time()
        self.head_started = 0.0
        self._parsing: Exchange | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._expect_continue = False
        self._upgraded = False
        self._websocket_head: bytes | None = None  # a WebSocket handshake to hand over
        self._last: Exchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._next: asyncio.Future[Exchange | None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server_state.connections.add(self)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.server = (str(local[0]), int(local[1])) if isinstance(local, tuple) else None
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        _Sweeper.ensure(self.server_state, self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    def _gone(self) -> None:
        """The client is gone: waiters wake, sends become no-ops, receives say disconnect."""
        if self.disconnected and self not in self.server_state.connections:
            return
        self.disconnected = True
        self.server_state.connections.discard(self)
        if self._next is not None and not self._next.done():
            self._next.set_result(None)  # the parked task ends
        for exchange in (self.current, self._parsing, *self.queue):
            if exchange is not None:
                exchange.wake()
        self.queue.clear()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self._upgraded:
            return  # bytes after an Upgrade request: not ours to parse; the connection closes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._websocket_head is not None and self.transport is not None:
                # A WebSocket handshake: the server's WebSocket protocol takes the connection.
                head, self._websocket_head = self._websocket_head, None
                self.resume_reading()
                self._gone()
                rest = data[upgrade.args[0] :]
                hand_over(self.transport, self.config, self.server_state, self.app_state, head + rest)
                return
            # Other upgrades and CONNECT: answered as plain HTTP, then the connection
            # closes, since what follows on it is not HTTP.
            self._upgraded = True
            exchange = self._parsing or self._last
            if exchange is not None:
                exchange.keep_alive = False
                exchange.body_complete = True
                exchange.wake()
                if exchange.complete:
                    self.close()
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadTooLarge):
                self._reject(431, "request_header_too_large", "the request line and headers are too large")
            elif isinstance(cause, _BadTarget):
                self._reject(400, "bad_request", "invalid request target")
            else:
                logger.error("request parsing failed", exc_info=cause)
                self._reject(400, "bad_request", "invalid HTTP request")
        except httptools.HttpParserError as exc:
            self._reject(400, "bad_request", f"invalid HTTP request: {_describe(exc)}")

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- llhttp callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._expect_continue = False
        self.head_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge()
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.head_started = 0.0
        try:
            parsed = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            raise _BadTarget() from None
        if parsed.host:
            # Absolute form ("GET http://host/path"): the target's authority is the host
            # (RFC 9112 §3.2.2), whatever a Host header says; route by it, forward it.
            authority = parsed.host + (b":%d" % parsed.port if parsed.port else b"")
            self._headers = [item for item in self._headers if item[0] != b"host"]
            self._headers.append((b"host", authority))
        raw_path: bytes = parsed.path or b"/"
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        if self.current is None and parser.should_upgrade() and self.config.ws_protocol_class is not None:
            target = raw_path + b"?" + parsed.query if parsed.query else raw_path
            self._websocket_head = websocket_handshake(parser.get_method(), target, self._headers)
            if self._websocket_head is not None:
                return
        version = parser.get_http_version()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": self._headers,
        }
        if self.app_state:
            scope["state"] = self.app_state.copy()
        exchange = Exchange(self, scope, parser.should_keep_alive(), self._expect_continue)
        self._parsing = self._last = exchange
        if self.current is None:
            self._start(exchange)
        else:
            self.queue.append(exchange)  # pipelined: answered in order
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self._parsing
        if exchange is None:
            return
        exchange.body.append(body)
        exchange.body_size += len(body)
        if exchange.body_size > BODY_HIGH_WATER:
            self.pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self._parsing
        if exchange is None:
            return
        self._parsing = None
        exchange.body_complete = True
        exchange.wake()

    # --- requests and responses ---------------------------------------------------------
    def _start(self, exchange: Exchange) -> None:
        """Hand ``exchange`` to the connection's task (made on the first request).

        One task per connection serves its requests in turn, parked on a future between
        them: cheaper than a task per request (about 0.7 µs here, in asyncio's task registry
        and scheduling), and requests on one connection are sequential anyway.
        """
        self.current = exchange
        waiter = self._next
        if waiter is not None:
            self._next = None
            waiter.set_result(exchange)
        elif self._task is None:
            task = self._task = self.loop.create_task(self._serve(exchange))
            tasks = self.server_state.tasks
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        # else: the task is still finishing the previous request and will take this one.

    async def _serve(self, exchange: Exchange | None) -> None:
        try:
            while exchange is not None:
                await self._run(exchange)
                if self.disconnected:
                    return
                if self.current is not None and self.current is not exchange:
                    exchange = self.current  # started (pipelined) while the last one finished
                    continue
                self._next = self.loop.create_future()
                exchange = await self._next
        finally:
            self._task = None
            self._next = None

    async def _run(self, exchange: Exchange) -> None:
        if self.disconnected:
            return  # refused or gone before the app ran: nothing to forward
        try:
            await self.app(exchange.scope, exchange.receive, exchange.send)
        except BaseException as exc:
            if not isinstance(exc, ResponseAborted):
                logger.error("the proxy app failed", exc_info=exc)
            if not exchange.started and not self.disconnected:
                self.write_raw(error_response(500, "internal_error", "the gateway failed to handle the request"))
                self.close()
            else:
                self.abort()
            if not isinstance(exc, Exception):
                raise
        else:
            if not exchange.complete and not self.disconnected:
                if exchange.started:
                    logger.error("the proxy app returned without completing its response")
                    self.abort()
                else:
                    self.write_raw(error_response(500, "internal_error", "no response was produced"))
                    self.close()

    def response_complete(self, exchange: Exchange) -> None:
        """The response is sent: close, start the next pipelined request, or wait idle."""
        self.server_state.total_requests += 1
        self.last_activity = self.loop.time()
        self.current = None
        if not exchange.keep_alive or not exchange.body_complete:
            # An unread request body would be taken for the next request: close instead.
            self.close()
            return
        if self.queue:
            self._start(self.queue.popleft())
        if not self.queue:
            self.resume_reading()

    # --- transport helpers ---------------------------------------------------------------
    def write_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.disconnected:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the client reads; a client stalled past the write timeout is dropped."""
        self._drain_waiter = waiter = self.loop.create_future()
        try:
            async with asyncio.timeout(self.write_timeout):
                await waiter
        except TimeoutError:
            logger.info(
                "client %s read nothing for %gs; closing", self.client[0] if self.client else "?", self.write_timeout
            )
            self.abort()
            self._gone()

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.disconnected:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.disconnected:
            self.read_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _reject(self, status: int, code: str, message: str) -> None:
        """Answer a request the parser refused, and close the connection.

        If a response is already under way, it is finished and the connection closed after
        it. Otherwise the error is answered now and the request in progress (whose body
        may be half-forwarded) sees a disconnect, so the upstream never takes it as whole.
        """
        logger.info("rejected a request from %s: %s", self.client[0] if self.client else "?", message)
        self._upgraded = True  # parse nothing more from this connection
        self.queue.clear()
        current = self.current
        if current is not None and current.started:
            current.keep_alive = False
            return
        self.write_raw(error_response(status, code, message))
        self.close()
        self.disconnected = True
        for exchange in (current, self._parsing):
            if exchange is not None:
                exchange.wake()

    def check_timeouts(self, now: float) -> None:
        """Called by the sweeper: close idle keep-alive connections and slow request heads."""
        if self.disconnected:
            return
        if self.head_started and now - self.head_started > self.head_timeout:
            self._reject(408, "request_timeout", "the request head took too long")
        elif self.current is None and not self.head_started and now - self.last_activity > self.keep_alive_timeout:
            self.close()

    def shutdown(self) -> None:
        """Called by uvicorn on shutdown: close when idle, else after the current response."""
        if self.current is None:
            self.close()
        else:
            self.current.keep_alive = False
            self.queue.clear()


class _HeadTooLarge(Exception):
    """The request head passed MAX_HEAD_BYTES."""


class _BadTarget(Exception):
    """The request target is not a URL the gateway can route."""


def _describe(exc: Exception) -> str:
    """llhttp's reason for refusing a request, as one short line for the client."""
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class _Sweeper:
    """Once a second, lets every connection of one server check its timeouts."""

    def __init__(self, server_state: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.server_state = server_state
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = loop.call_later(SWEEP_INTERVAL, self.sweep)

    @classmethod
    def ensure(cls, server_state: Any, loop: asyncio.AbstractEventLoop) -> None:
        sweeper = getattr(server_state, "gateway_sweeper", None)
        if sweeper is None or sweeper.handle is None:
            server_state.gateway_sweeper = cls(server_state, loop)

    def sweep(self) -> None:
        connections = self.server_state.connections
        if not connections:
            self.handle = None
            return
        now = self.loop.time()
        for connection in list(connections):
            check = getattr(connection, "check_timeouts", None)
            if check is not None:
                check(now)
        self.handle = self.loop.call_later(SWEEP_INTERVAL, self.sweep)


def protocol_factory(*, head_timeout: float, write_timeout: float) -> Callable[..., GatewayHttpProtocol]:
    """The class uvicorn is given as ``Config(http=...)``, with the gateway's limits bound.

    ``head_timeout`` bounds how long a request head may take to arrive (408 after);
    ``write_timeout`` how long a write may wait for a client that does not read.
    """
    return functools.partial(GatewayHttpProtocol, head_timeout=head_timeout, write_timeout=write_timeout)
