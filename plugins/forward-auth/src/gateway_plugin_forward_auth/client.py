"""The calls to auth services: one pooled ``httpx.AsyncClient`` per event loop.

Why per loop: an AsyncClient's pooled connections belong to the event loop that opened
them. A gateway worker runs one loop; a test process may run several gateways, each in a
thread with a loop of its own. The client of a loop is made on the first auth call in it
and closed by the plugin's ``gateway_shutdown`` hook, which runs in that same loop after
the last request. Plugin objects share it (keep-alive connections to the same auth service
are reused across routes) and never own it: they are made and dropped with route tables,
which have no teardown.

This is the only module that imports httpx; its exceptions become :class:`AuthServiceError`
here and go no further.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from gateway_core import GatewayError
from gateway_core.messages import RawHeaders
from gateway_plugin_forward_auth.config import MAX_BODY_BYTES

_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=64, keepalive_expiry=30.0)
"""Per worker, over all auth services: enough for bursts, bounded under a slow auth service."""


class AuthServiceError(GatewayError):
    """The auth service could not be asked: unreachable, too slow, or not speaking HTTP."""

    status = 503
    code = "auth_service_unavailable"


@dataclass(frozen=True, slots=True)
class AuthAnswer:
    """What the auth service said: status, headers (lowercase names) and the body's start."""

    status: int
    headers: RawHeaders
    body: bytes
    """At most ``MAX_BODY_BYTES``."""
    truncated: bool
    """Whether the body was longer and cut off."""


class AuthClients:
    """The shared client of each running event loop, made on first use."""

    def __init__(self) -> None:
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def current(self) -> httpx.AsyncClient:
        """The client of the running loop (made now if it has none)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            for stale in [known for known in self._clients if known.is_closed()]:
                del self._clients[stale]  # a loop that ended without the shutdown hook
            # trust_env=False: HTTP(S)_PROXY variables must not reroute calls to in-cluster services.
            client = httpx.AsyncClient(limits=_LIMITS, follow_redirects=False, trust_env=False)
            self._clients[loop] = client
        return client

    async def aclose_current(self) -> None:
        """Close the running loop's client, if it made one."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def __len__(self) -> int:
        return len(self._clients)


CLIENTS = AuthClients()
"""The process's clients, one per event loop (see the module docstring for why it is global)."""


class AuthService:
    """One auth service URL, asked with a total time limit."""

    __slots__ = ("_url", "_timeout", "_extensions")

    def __init__(self, url: str, timeout: float) -> None:
        try:
            self._url = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid auth service URL: {exc}") from None
        self._timeout = timeout
        limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        self._extensions = {"timeout": limits}

    async def ask(self, headers: RawHeaders) -> AuthAnswer:
        """``GET`` the auth service with ``headers``; :class:`AuthServiceError` if it cannot answer."""
        request = httpx.Request("GET", self._url, headers=headers, extensions=self._extensions)
        try:
            async with asyncio.timeout(self._timeout):
                response = await CLIENTS.current().send(request, stream=True)
                try:
                    body, truncated = await _read_bounded(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise AuthServiceError(f"no answer within {self._timeout:g}s") from None
        except httpx.TimeoutException as exc:
            raise AuthServiceError(f"no answer within {self._timeout:g}s ({type(exc).__name__})") from None
        except (httpx.HTTPError, httpx.StreamError) as exc:
            raise AuthServiceError(f"{type(exc).__name__}: {exc}") from None
        raw = [(name.lower(), value) for name, value in response.headers.raw]
        return AuthAnswer(status=response.status_code, headers=raw, body=body, truncated=truncated)


async def _read_bounded(response: httpx.Response) -> tuple[bytes, bool]:
    """Up to ``MAX_BODY_BYTES`` of the body as sent (no decoding: no decompression bombs)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"".join(chunks)[:MAX_BODY_BYTES], True
    return b"".join(chunks), False
