"""The route-source contract every provider keeps.

A route source publishes :class:`~gateway_core.manifests.Snapshot` objects: the first as
soon as it has read everything once (the gateway is ready after it), then a new one after
every change, until it is cancelled. A snapshot is always complete — the whole set of
objects, not a delta — so the gateway rebuilds the table from it alone. Problems reading a
part go into ``Snapshot.problems``; the source keeps running. A source that cannot reach its
backend keeps retrying and publishes nothing, so the last good table keeps serving.

A source may also define ``async def table_built(self, table: RouteTable) -> None``: the
gateway awaits it after every table it builds and swaps in (the Kubernetes source writes
Ingress status and Events from it). It must return quickly and never block the event loop;
an exception is logged, never raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway_core.manifests.snapshot import Snapshot

Publish = Callable[[Snapshot], Awaitable[None]]
"""What a route source awaits with each complete snapshot; the gateway builds a table from it (bursts coalesce)."""


class RouteSource(Protocol):
    """Feeds the gateway snapshots of Kubernetes objects."""

    async def run(self, publish: Publish) -> None:
        """Publish the first snapshot, then one per change; return only when cancelled."""
        ...
