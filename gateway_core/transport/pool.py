"""The default upstream transport: pooled keep-alive HTTP/1.1 connections per endpoint.

Chosen by measurement (``bench/proxy_bench.py``): a small asyncio protocol per connection
(:mod:`gateway_core.transport.connection`), llhttp parsing responses, idle connections kept
per endpoint in LIFO order. On the same bench the httpx-based transport did 1,912 req/s
against about 31,000. Read deadlines of every busy connection are checked by one ticker.
An endpoint with ``tls`` set is reached over HTTPS; since ``tls`` is part of the endpoint's
identity, TLS and plain connections to one address never share a pool entry.

This module must not know about routes or plugins; it moves bytes to endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from gateway_core.errors import UpstreamConnectError, UpstreamConnectTimeoutError
from gateway_core.messages import Endpoint, UpstreamRequest, UpstreamResponse, UpstreamTLS
from gateway_core.tls.contexts import client_context
from gateway_core.transport.base import PoolStats, Timeouts
from gateway_core.transport.connection import StaleConnectionError, UpstreamConnection

logger = logging.getLogger("gateway_core.transport")

DEADLINE_TICK = 0.05
"""Seconds between read-deadline checks: the precision of the read timeout."""


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections per endpoint (the default transport).

    ``max_idle`` caps idle connections across all endpoints of this worker (Go's
    ``MaxIdleConns``); ``idle_timeout`` closes connections idle for longer.
    """

    def __init__(self, *, max_idle: int = 100, idle_timeout: float = 90.0, keep_alive: bool = True) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.keep_alive = keep_alive
        self._idle: dict[Endpoint, list[UpstreamConnection]] = {}
        self._open: dict[Endpoint, set[UpstreamConnection]] = {}
        self._idle_total = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._watched: set[UpstreamConnection] = set()
        self._ticker: asyncio.TimerHandle | None = None
        self._tls_contexts: dict[UpstreamTLS, ssl.SSLContext] = {}

    async def send(self, request: UpstreamRequest, endpoint: Endpoint, timeouts: Timeouts) -> UpstreamResponse:
        connection = self._take_idle(endpoint)
        if connection is not None:
            try:
                return await connection.exchange(request, timeouts, reused=True)
            except StaleConnectionError:
                logger.debug("retrying on a new connection: idle connection to %s was closed", endpoint)
        connection = await self._connect(endpoint, timeouts.connect)
        return await connection.exchange(request, timeouts, reused=False)

    def stats(self) -> dict[Endpoint, PoolStats]:
        result = {}
        for endpoint, connections in self._open.items():
            idle = len(self._idle.get(endpoint, ()))
            result[endpoint] = PoolStats(idle=idle, active=len(connections) - idle)
        return result

    async def aclose(self) -> None:
        for handle in (self._sweeper, self._ticker):
            if handle is not None:
                handle.cancel()
        self._sweeper = self._ticker = None
        self._watched.clear()
        for connections in list(self._open.values()):
            for connection in list(connections):
                connection.abort()
        self._idle.clear()
        self._open.clear()
        self._idle_total = 0
        await asyncio.sleep(0)  # let the transports run their connection_lost callbacks

    def _take_idle(self, endpoint: Endpoint) -> UpstreamConnection | None:
        idle = self._idle.get(endpoint)
        if not idle:
            return None
        now = idle[-1].loop.time()
        while idle:
            connection = idle.pop()
            self._idle_total -= 1
            if connection.closed:
                continue
            if now - connection.idle_since > self.idle_timeout:
                connection.abort()
                continue
            return connection
        return None

    async def _connect(self, endpoint: Endpoint, limit: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        tls = endpoint.tls  # HTTPS to this endpoint: the handshake counts against the connect timeout
        try:
            async with asyncio.timeout(limit):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(self, endpoint, loop),
                    endpoint.host,
                    endpoint.port,
                    ssl=self._tls_context(tls) if tls is not None else None,
                    server_hostname=tls.server_name if tls is not None else None,
                )
        except TimeoutError:
            raise UpstreamConnectTimeoutError(f"connecting to upstream {endpoint} timed out after {limit:g}s") from None
        except socket.gaierror as exc:
            raise UpstreamConnectError(f"cannot resolve upstream {endpoint.host}: {exc.strerror}") from None
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamConnectError(
                f"TLS handshake with upstream {endpoint} failed: certificate verify failed: {exc.verify_message}"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(f"TLS handshake with upstream {endpoint} failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to upstream {endpoint}: {exc.strerror or exc}") from None
        self._open.setdefault(endpoint, set()).add(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.idle_timeout / 2, self._sweep)
        return connection

    def _tls_context(self, tls: UpstreamTLS) -> ssl.SSLContext:
        """The client context for ``tls``, made once per distinct setting (they are few)."""
        context = self._tls_contexts.get(tls)
        if context is None:
            if len(self._tls_contexts) >= 256:  # settings that changed many times: start over
                self._tls_contexts.clear()
            context = self._tls_contexts[tls] = client_context(tls)
        return context

    def release(self, connection: UpstreamConnection) -> None:
        if self._idle_total >= self.max_idle:
            connection.abort()
            return
        connection.idle_since = connection.loop.time()
        self._idle.setdefault(connection.endpoint, []).append(connection)
        self._idle_total += 1

    def forget(self, connection: UpstreamConnection) -> None:
        open_connections = self._open.get(connection.endpoint)
        if open_connections is not None:
            open_connections.discard(connection)
            if not open_connections:
                del self._open[connection.endpoint]
        idle = self._idle.get(connection.endpoint)
        if idle and connection in idle:
            idle.remove(connection)
            self._idle_total -= 1
            if not idle:
                del self._idle[connection.endpoint]

    def watch(self, connection: UpstreamConnection) -> None:
        """Check ``connection``'s read deadline every tick until its response is whole.

        One ticker for all connections costs a set insertion per request, where a timer
        per request (``call_later`` + ``cancel``) cost about 1.4 µs on this path.
        """
        self._watched.add(connection)
        if self._ticker is None:
            self._ticker = connection.loop.call_later(DEADLINE_TICK, self._tick)

    def unwatch(self, connection: UpstreamConnection) -> None:
        self._watched.discard(connection)

    def _tick(self) -> None:
        self._ticker = None
        if not self._watched:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in list(self._watched):
            if not connection.check_deadline(now):
                self._watched.discard(connection)
        if self._watched:
            self._ticker = loop.call_later(DEADLINE_TICK, self._tick)

    def _sweep(self) -> None:
        """Close connections idle past the timeout, so upstream sockets do not linger."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connections in list(self._idle.values()):
            for connection in list(connections):
                if now - connection.idle_since > self.idle_timeout:
                    connection.abort()
        if self._open:
            self._sweeper = loop.call_later(self.idle_timeout / 2, self._sweep)
