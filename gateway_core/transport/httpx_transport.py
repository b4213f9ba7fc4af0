"""An upstream transport on httpx: the alternative to the pool, chosen with
``gateway.transport: httpx``.

It exists for what the pool does not do (HTTP/2 upstreams, for programs that construct it
with ``http2=True`` and have ``h2`` installed) and as the yardstick the pool was measured
against: on the proxy bench (2 workers, c=50) it measured 1,912 req/s where the pool did
about 31,000, because httpcore's pool scans its connections per request. Requests are
built as ``httpx.Request`` directly so no client default header is added.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from gateway_core.errors import (
    UpstreamClosedError,
    UpstreamConnectError,
    UpstreamConnectTimeoutError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway_core.messages import Endpoint, Headers, Timeouts, UpstreamRequest, UpstreamResponse, UpstreamTLS
from gateway_core.tls.contexts import client_context
from gateway_core.transport.base import PoolStats


def translate_error(exc: httpx.HTTPError, endpoint: Endpoint) -> UpstreamError:
    """httpx's exceptions as the gateway's."""
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamConnectTimeoutError(f"connecting to upstream {endpoint} timed out")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"upstream {endpoint} did not answer in time")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamConnectError(f"cannot connect to upstream {endpoint}: {exc}")
    if isinstance(exc, httpx.RemoteProtocolError):
        if "closed" in str(exc).lower() or "disconnected" in str(exc).lower():
            return UpstreamClosedError(f"upstream {endpoint} closed the connection: {exc}")
        return UpstreamProtocolError(f"invalid HTTP response from upstream {endpoint}: {exc}")
    return UpstreamClosedError(f"upstream {endpoint} failed: {exc}")


class _HttpxBody:
    """An httpx streaming response as a ``ResponseBody``."""

    __slots__ = ("_response", "_iterator", "_endpoint", "_done", "_closing")

    def __init__(self, response: httpx.Response, endpoint: Endpoint, closing: set[asyncio.Future[None]]) -> None:
        self._closing = closing
        self._response = response
        self._iterator: AsyncIterator[bytes] = response.aiter_raw()
        self._endpoint = endpoint
        self._done = False

    def take(self) -> tuple[bytes, bool]:
        return b"", self._done

    async def read(self) -> bytes:
        if self._done:
            return b""
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            self._done = True
            await self._response.aclose()
            return b""
        except httpx.HTTPError as exc:
            self._done = True
            await self._response.aclose()
            raise translate_error(exc, self._endpoint) from None

    def close(self) -> None:
        if not self._done:
            self._done = True
            # httpx closes asynchronously; keep the task referenced until it is done.
            task = asyncio.ensure_future(self._response.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


class HttpxTransport:
    """Upstream requests through one shared ``httpx.AsyncClient``."""

    def __init__(
        self, *, max_idle: int = 100, idle_timeout: float = 90.0, keep_alive: bool = True, http2: bool = False
    ) -> None:
        self._limits = httpx.Limits(
            max_keepalive_connections=max_idle if keep_alive else 0,
            max_connections=None,
            keepalive_expiry=idle_timeout,
        )
        self._http2 = http2
        self._client = httpx.AsyncClient(limits=self._limits, http2=http2, follow_redirects=False, trust_env=False)
        self._tls_clients: dict[UpstreamTLS, httpx.AsyncClient] = {}
        """One client per upstream TLS setting (httpx verifies per client, not per request)."""
        self._closing: set[asyncio.Future[None]] = set()

    def _client_for(self, tls: UpstreamTLS | None) -> httpx.AsyncClient:
        if tls is None:
            return self._client
        client = self._tls_clients.get(tls)
        if client is None:
            client = self._tls_clients[tls] = httpx.AsyncClient(
                limits=self._limits,
                http2=self._http2,
                follow_redirects=False,
                trust_env=False,
                verify=client_context(tls),
            )
        return client

    async def send(self, request: UpstreamRequest, endpoint: Endpoint, timeouts: Timeouts) -> UpstreamResponse:
        headers = list(request.headers.raw)
        content: AsyncIterator[bytes] | None = None
        if request.body is not None:
            content = request.body.chunks()
            if request.body.content_length is not None:
                headers.append((b"content-length", str(request.body.content_length).encode()))
        tls = endpoint.tls
        scheme = "https" if tls is not None else "http"
        url = f"{scheme}://{endpoint.address}{request.target.decode('latin-1')}"
        extensions: dict[str, object] = {
            "timeout": {
                "connect": timeouts.connect,
                "read": timeouts.read,
                "write": timeouts.write,
                "pool": timeouts.connect,
            }
        }
        if tls is not None:
            extensions["sni_hostname"] = tls.server_name  # also the name the certificate is checked against
        outgoing = httpx.Request(request.method, url, headers=headers, content=content, extensions=extensions)
        try:
            response = await self._client_for(tls).send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            raise translate_error(exc, endpoint) from None
        raw = [(name.lower(), value) for name, value in response.headers.raw]
        return UpstreamResponse(
            status=response.status_code,
            headers=Headers(raw),
            body=_HttpxBody(response, endpoint, self._closing),
            endpoint=endpoint,
        )

    def stats(self) -> dict[Endpoint, PoolStats]:
        return {}

    async def aclose(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self._client.aclose()
        for client in self._tls_clients.values():
            await client.aclose()
        self._tls_clients.clear()
