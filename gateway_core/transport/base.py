"""The transport interface: one method to send a request to one endpoint.

The proxy and the pipeline only know this interface, so the implementation (our pooled
HTTP/1.1 client, or the httpx-based one for HTTP/2 upstreams) is chosen by a setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway_core.messages import Endpoint, Timeouts, UpstreamRequest, UpstreamResponse

__all__ = ["PoolStats", "Timeouts", "Transport"]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Connection counts of one endpoint's pool."""

    idle: int
    active: int


class Transport(Protocol):
    """Sends one request to one endpoint and returns the response as soon as its head is in.

    Raises only :class:`gateway_core.errors.UpstreamError` subclasses. The response body
    streams afterwards through ``UpstreamResponse.body``; the caller must read it to the end
    or ``close()`` it, which returns the connection to the pool or closes it.
    """

    async def send(self, request: UpstreamRequest, endpoint: Endpoint, timeouts: Timeouts) -> UpstreamResponse:
        """Send ``request`` to ``endpoint``."""
        ...

    def stats(self) -> dict[Endpoint, PoolStats]:
        """Open connections per endpoint (for the admin API and tests)."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...
