"""The part every balancer shares: which of a backend's endpoints may be picked right now.

Outlier detection ejects endpoints by writing ``ejected_until`` on their
:class:`~gateway_core.transport.endpoint_state.EndpointState` and bumping
``EndpointStates.generation``. A balancer must skip ejected endpoints without scanning them on
every pick, so :class:`LiveBalancer` caches the live list and recomputes it only when the
generation moved or the earliest ejection it knows of has run out (one float comparison, and
one clock read only while something is ejected). It never filters down to nothing: when every
endpoint is ejected, all of them are used.

States are looked up on the first pick, in the event loop, not at table build (a worker
thread), so the balancer and the pipeline always hold the same state objects.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from time import monotonic

from gateway_core.messages import Endpoint, RequestContext
from gateway_core.transport.endpoint_state import EndpointState, EndpointStates


class LiveBalancer:
    """Base of the strategies: ``endpoints`` in rotation, the live (not ejected) ones cached."""

    __slots__ = (
        "endpoints",
        "registry",
        "live",
        "live_states",
        "excluded",
        "excluded_ids",
        "_positions",
        "_generation",
        "_expires",
    )

    def __init__(self, endpoints: tuple[Endpoint, ...], registry: EndpointStates | None = None) -> None:
        self.endpoints = endpoints
        """Every endpoint in rotation, in a fixed order."""
        self.registry = registry if registry is not None else EndpointStates()
        self.live: tuple[Endpoint, ...] = endpoints
        """The endpoints not ejected now (every endpoint when all are ejected)."""
        self.live_states: tuple[EndpointState, ...] = ()
        """The states of :attr:`live`, in the same order."""
        self.excluded: frozenset[Endpoint] = frozenset()
        """The ejected endpoints being skipped (empty when none is, or when all are)."""
        self.excluded_ids: frozenset[int] = frozenset()
        """``id()`` of the :attr:`endpoints` objects in :attr:`excluded` (cheaper to test than equality)."""
        self._positions: dict[Endpoint, int] = {}
        self._generation = -1
        self._expires = 0.0

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for this try (see :class:`gateway_core.messages.Balancer`).

        Each strategy starts with the same check, written out for speed: when
        ``registry.generation`` moved or the earliest known ejection ran out, :meth:`refresh`.
        """
        raise NotImplementedError

    def refresh(self) -> None:
        """Recompute the live list from the endpoints' states."""
        registry = self.registry
        self._generation = registry.generation
        states = registry.of(self.endpoints)
        now = monotonic()
        ejected = [index for index, state in enumerate(states) if state.ejected_until > now]
        self._expires = min((states[index].ejected_until for index in ejected), default=0.0)
        if ejected and len(ejected) < len(states):
            out = set(ejected)
            kept = [index for index in range(len(states)) if index not in out]
            self.live = tuple(self.endpoints[index] for index in kept)
            self.live_states = tuple(states[index] for index in kept)
            self.excluded = frozenset(self.endpoints[index] for index in ejected)
        else:
            self.live, self.live_states, self.excluded = self.endpoints, states, frozenset()
        self.excluded_ids = frozenset(id(endpoint) for endpoint in self.excluded)
        self._positions = {endpoint: position for position, endpoint in enumerate(self.live)}
        self.changed()

    def changed(self) -> None:
        """Hook: the live list was recomputed (strategies rebuild what they derive from it)."""

    def tried(self, avoid: Collection[Endpoint]) -> set[int]:
        """Positions in :attr:`live` of the endpoints in ``avoid``."""
        positions = self._positions
        return {positions[endpoint] for endpoint in avoid if endpoint in positions}

    def candidates(self, avoid: Collection[Endpoint]) -> tuple[EndpointState, ...]:
        """The live states not in ``avoid``; all live ones when every one of them was tried."""
        tried = self.tried(avoid)
        if not tried or len(tried) == len(self.live_states):
            return self.live_states
        return tuple(state for position, state in enumerate(self.live_states) if position not in tried)


def in_rotation(
    endpoints: Iterable[Endpoint], weights: Mapping[str, int]
) -> tuple[tuple[Endpoint, ...], tuple[int, ...]]:
    """The endpoints that take traffic and their weights.

    A weight is looked up by ``ip:port``, then by ``ip``; unlisted endpoints weigh 1 and weight 0
    takes an endpoint out. When every endpoint weighs 0 they all weigh 1 (a backend is never
    emptied by its weights, as it is never emptied by ejections).
    """
    weighted = [(endpoint, endpoint_weight(endpoint, weights)) for endpoint in endpoints]
    kept = [(endpoint, weight) for endpoint, weight in weighted if weight > 0]
    if not kept:
        kept = [(endpoint, 1) for endpoint, _ in weighted]
    return tuple(endpoint for endpoint, _ in kept), tuple(weight for _, weight in kept)


def endpoint_weight(endpoint: Endpoint, weights: Mapping[str, int]) -> int:
    """The configured weight of ``endpoint`` (by ``ip:port``, then ``ip``), 1 when unlisted."""
    if not weights:
        return 1
    weight = weights.get(endpoint.address)
    if weight is None:
        weight = weights.get(endpoint.host, 1)
    return weight
