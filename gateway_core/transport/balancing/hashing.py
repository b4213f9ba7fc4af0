"""Consistent hashing: requests with the same key go to the same endpoint.

The ring holds, per endpoint, points at hashes of its address (``ip:port#n``), as many as its
weight says (:data:`POINTS_PER_WEIGHT` each); a key goes to the owner of the first point at or
after its own hash. Adding or removing one of N endpoints moves only the keys of the arcs it
gains or loses, about 1/N of them, and every worker and replica builds the same ring from the
same addresses (BLAKE2b, not Python's per-process ``hash``). The ring is built with the route
table, never per request.

An ejected endpoint's keys (or, on a retry, the tried endpoint's) go to the next owner along
the ring, so the other keys stay where they are. A request without the key (no such header or
cookie, or an empty one) goes to a random live endpoint.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_left
from collections.abc import Callable, Collection, Sequence
from time import monotonic

from gateway_core.messages import Endpoint, RawHeaders, RequestContext
from gateway_core.transport.balancing.cookies import cookie_value
from gateway_core.transport.balancing.live import LiveBalancer
from gateway_core.transport.endpoint_state import EndpointStates

POINTS_PER_WEIGHT = 160
"""Ring points per unit of weight (as ketama/nginx): enough for an even spread of a few endpoints."""
MAX_POINTS = 160 * 4096
"""Bound on the ring's size; weights scale down (proportions kept to rounding) past it."""

KeyReader = Callable[[RequestContext], bytes | None]


def stable_hash(data: bytes) -> int:
    """A 64-bit hash that every process computes the same (BLAKE2b)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class ConsistentHash(LiveBalancer):
    """A hash ring over the endpoints, keyed by ``hash_on``."""

    __slots__ = ("_points", "_owners", "_key", "hash_on")

    def __init__(
        self,
        endpoints: tuple[Endpoint, ...],
        weights: Sequence[int] | None = None,
        registry: EndpointStates | None = None,
        *,
        hash_on: str = "client_ip",
    ) -> None:
        super().__init__(endpoints, registry)
        self.hash_on = hash_on
        self._key = key_reader(hash_on)
        ring = build_ring(endpoints, weights or [1] * len(endpoints))
        self._points = [point for point, _ in ring]
        self._owners = [owner for _, owner in ring]

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        if self._generation != self.registry.generation or (0.0 < self._expires <= monotonic()):
            self.refresh()
        key = self._key(ctx) if ctx is not None else None
        if not key:
            states = self.candidates(avoid) if avoid else self.live_states
            return states[int(random.random() * len(states))].endpoint if states else None
        points = self._points
        if not points:
            return None
        index = bisect_left(points, stable_hash(key))
        if index == len(points):
            index = 0
        if self.excluded_ids or avoid:
            return self._walk(index, avoid)
        return self._owners[index]

    def owner(self, key: bytes) -> Endpoint | None:
        """The endpoint that owns ``key`` when none is ejected (for tests and tools)."""
        if not self._points:
            return None
        index = bisect_left(self._points, stable_hash(key))
        return self._owners[index % len(self._points)]

    def _walk(self, index: int, avoid: Collection[Endpoint]) -> Endpoint:
        """The first owner from ``index`` on that is neither ejected nor avoided; else not ejected."""
        owners = self._owners
        count = len(owners)
        excluded = self.excluded_ids
        if avoid:
            tried = {id(self.live[position]) for position in self.tried(avoid)}
            if len(tried) < len(self.live):
                excluded = excluded | tried
        for step in range(count):
            owner = owners[(index + step) % count]
            if id(owner) not in excluded:
                return owner
        return owners[index]


def build_ring(endpoints: Sequence[Endpoint], weights: Sequence[int]) -> list[tuple[int, Endpoint]]:
    """The ring's points, sorted: ``POINTS_PER_WEIGHT x weight`` per endpoint, hashed from its address."""
    counts = [POINTS_PER_WEIGHT * weight for weight in weights]
    total = sum(counts)
    if total > MAX_POINTS:
        counts = [max(1, count * MAX_POINTS // total) for count in counts]
    ring = [
        (stable_hash(f"{endpoint.address}#{number}".encode()), endpoint)
        for endpoint, count in zip(endpoints, counts, strict=True)
        for number in range(count)
    ]
    ring.sort(key=lambda item: (item[0], item[1].address))
    return ring


def key_reader(hash_on: str) -> KeyReader:
    """Reads the hashing key of a request: ``client_ip``, ``path``, ``header:<name>``, ``cookie:<name>``."""
    if hash_on == "client_ip":
        return _client_ip
    if hash_on == "path":
        return _path
    kind, _, name = hash_on.partition(":")
    if kind == "header" and name:
        return _header_reader(name.lower().encode("latin-1"))
    if kind == "cookie" and name:
        return _cookie_reader(name.encode("latin-1"))
    raise ValueError(f"cannot hash on {hash_on!r}: use client_ip, path, header:<name> or cookie:<name>")


def _client_ip(ctx: RequestContext) -> bytes:
    return ctx.client_ip.encode("utf-8", "surrogatepass")


def _path(ctx: RequestContext) -> bytes:
    return ctx.path.encode("utf-8", "surrogatepass")


def _header_reader(name: bytes) -> KeyReader:
    def read(ctx: RequestContext) -> bytes | None:
        return _first(ctx.request.headers.raw, name)

    return read


def _cookie_reader(name: bytes) -> KeyReader:
    def read(ctx: RequestContext) -> bytes | None:
        return cookie_value(ctx.request.headers.raw, name)

    return read


def _first(raw: RawHeaders, name: bytes) -> bytes | None:
    for key, value in raw:
        if key == name:
            return value
    return None
