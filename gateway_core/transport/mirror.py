"""Request mirroring: a copy of a request goes to other Services, fire-and-forget.

Not built yet: the call site is in place (``Pipeline.call_upstream``).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway_core.manifests.upstream_policy import MirrorConfig
from gateway_core.messages import RequestContext
from gateway_core.routing.table import Backend
from gateway_core.transport.base import Transport


class Mirrors:
    """Sends request copies to mirror backends without ever delaying the main request."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def start(self, mirrors: Sequence[tuple[MirrorConfig, Backend]], ctx: RequestContext) -> None:
        """Start copies of ``ctx.request`` to ``mirrors`` (returns at once)."""

    async def aclose(self) -> None:
        """Cancel copies still in flight."""
