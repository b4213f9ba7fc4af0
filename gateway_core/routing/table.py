"""The route table: immutable, built whole, swapped atomically, matched per request.

A :class:`Route` holds everything the hot path needs, already resolved: the balancer over
ready endpoints, the timeouts, and each phase's plugin methods in run order. Nothing is
sorted or looked up per request. :class:`TableHolder` publishes a new table in one
assignment; a request keeps the table it started with.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway_core.manifests.objects import Ingress
from gateway_core.manifests.snapshot import Problem
from gateway_core.manifests.translate import BackendTarget, RouteSpec
from gateway_core.manifests.upstream_policy import CanaryConfig, MirrorConfig
from gateway_core.messages import Balancer, Endpoint, RequestContext, RouteInfo, Timeouts, UpstreamResponse
from gateway_core.routing.binding import BoundPlugin, InstanceKey
from gateway_core.routing.canary import CanaryPlan
from gateway_core.routing.matching import HostIndex
from gateway_core.tls.certificate_set import CertificateSet


class Backend:
    """One Service port a route sends to: its resolved target and the balancer over its endpoints."""

    __slots__ = ("target", "balancer", "label", "stamp")

    def __init__(self, target: BackendTarget, balancer: Balancer) -> None:
        self.target = target
        self.balancer = balancer
        self.stamp: Callable[[RequestContext, Endpoint, UpstreamResponse], None] | None = getattr(
            balancer, "stamp", None
        )
        """A balancer's optional hook on the response of the endpoint it chose (affinity cookies)."""
        self.label = f"{target.namespace}/{target.service}"
        """``namespace/service``, the metrics label."""

    def describe(self) -> dict[str, Any]:
        return {
            "service": self.target.label,
            "endpoints": [endpoint.address for endpoint in self.target.endpoints],
            "problem": self.target.problem,
        }


class Route:
    """One servable route, with its plugins split per phase."""

    __slots__ = (
        "spec",
        "info",
        "backend",
        "balancer",
        "canaries",
        "canary_plan",
        "mirrors",
        "timeouts",
        "unavailable",
        "plugins",
        "on_request",
        "on_upstream_request",
        "around_upstream",
        "on_response",
        "on_local_response",
        "on_log",
        "service_label",
        "plugin_names",
        "on_request_names",
    )

    def __init__(
        self,
        spec: RouteSpec,
        *,
        balancer: Balancer,
        timeouts: Timeouts,
        plugins: Sequence[BoundPlugin] = (),
        unavailable: str | None = None,
        canaries: Sequence[tuple[CanaryConfig, Backend]] = (),
        mirrors: Sequence[tuple[MirrorConfig, Backend]] = (),
    ) -> None:
        self.spec = spec
        self.info: RouteInfo = spec.info
        self.backend = Backend(spec.backend, balancer)
        """The route's own Service (the primary backend)."""
        self.balancer = balancer
        self.canaries = tuple(canaries)
        """Second Services for the same host and path, in the annotation's order."""
        self.canary_plan = CanaryPlan(self.canaries) if self.canaries else None
        """The canaries compiled for per-request selection (``routing.canary``)."""
        self.mirrors = tuple(mirrors)
        """Services that get a copy of each request (fire-and-forget)."""
        self.timeouts = timeouts
        self.unavailable = unavailable
        """Why the route answers 503 without calling upstream (a rejected Ingress), if it does."""
        self.plugins = tuple(plugins)
        self.service_label = f"{spec.backend.namespace}/{spec.backend.service}"

        def phase(name: str) -> tuple[Callable[..., Awaitable[Any]], ...]:
            return tuple(getattr(bound.instance, name) for bound in self.plugins if name in bound.phases)

        self.plugin_names = tuple(bound.spec.name for bound in self.plugins)
        self.on_request_names = tuple(bound.spec.name for bound in self.plugins if "on_request" in bound.phases)
        self.on_request = phase("on_request")
        self.on_upstream_request = phase("on_upstream_request")
        self.around_upstream = phase("around_upstream")
        self.on_response = phase("on_response")
        self.on_local_response = phase("on_local_response")
        self.on_log = phase("on_log")

    def describe(self) -> dict[str, Any]:
        """The route as ``/routes`` shows it."""
        policy = self.spec.policy
        return {
            "id": self.info.id,
            "ingress": self.info.ingress_ref,
            "kind": self.spec.kind.value,
            "host": self.info.host,
            "path": self.info.path,
            "path_type": self.info.path_type,
            "backend": self.backend.describe(),
            "canaries": [
                {**backend.describe(), **config.model_dump(exclude={"service", "port"}, exclude_none=True)}
                for config, backend in self.canaries
            ],
            "mirrors": [
                {**backend.describe(), **config.model_dump(exclude={"service", "port"})}
                for config, backend in self.mirrors
            ],
            "upstream": {
                "load_balance": policy.load_balance.model_dump(exclude_none=True),
                "timeouts": {
                    "connect": self.timeouts.connect,
                    "read": self.timeouts.read,
                    "write": self.timeouts.write,
                    "per_try": policy.timeouts.per_try,
                },
                "retries": policy.retries.model_dump(),
                "outlier_detection": policy.outlier_detection.model_dump(),
            },
            "plugins": [
                {"name": bound.spec.name, "priority": bound.spec.priority, "phases": list(bound.phases)}
                for bound in self.plugins
            ],
            "unavailable": self.unavailable,
        }


@dataclass(frozen=True, slots=True)
class RejectedIngress:
    """An Ingress whose new version is not served, and why."""

    ingress: str
    reasons: tuple[str, ...]
    serving_last_good: bool
    """True when the previous good version keeps serving; False when its routes answer 503."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """A route that lost a host/path conflict to an older Ingress's route."""

    route: str
    winner: str


@dataclass(slots=True)
class RouteTable:
    """One immutable generation of routes."""

    index: HostIndex[Route] = field(default_factory=HostIndex)
    routes: tuple[Route, ...] = ()
    rejected: Mapping[str, RejectedIngress] = field(default_factory=dict)
    conflicts: tuple[Conflict, ...] = ()
    problems: tuple[Problem, ...] = ()
    ignored: tuple[str, ...] = ()
    """Ingresses of another class, as ``namespace/name (class)``."""
    last_good: Mapping[str, Ingress] = field(default_factory=dict)
    instances: Mapping[InstanceKey, BoundPlugin] = field(default_factory=dict)
    stripped_headers: frozenset[bytes] = frozenset()
    """Request headers owned by plugins (identity and the like): removed from every client request."""
    certificates: CertificateSet = field(default_factory=CertificateSet)
    """The HTTPS listener's certificates by host, and the Secrets refused (``spec.tls``)."""
    generation: int = 0
    built_at: float = field(default_factory=time.time)
    build_seconds: float = 0.0

    def match(self, host: str, path: str) -> Route | None:
        """The route for a request host (lowercase, no port) and path."""
        return self.index.match(host, path)

    def endpoints(self) -> set[Endpoint]:
        """Every endpoint some route of this table may send to (its own, canary and mirror backends)."""
        found: set[Endpoint] = set()
        for route in self.routes:
            found.update(route.spec.backend.endpoints)
            for _, backend in (*route.canaries, *route.mirrors):
                found.update(backend.target.endpoints)
        return found

    def describe(self) -> dict[str, Any]:
        """The whole table as ``/routes`` shows it."""
        return {
            "generation": self.generation,
            "built_at": self.built_at,
            "build_seconds": round(self.build_seconds, 6),
            "routes": [route.describe() for route in self.routes],
            "rejected": [
                {"ingress": item.ingress, "reasons": list(item.reasons), "serving_last_good": item.serving_last_good}
                for item in self.rejected.values()
            ],
            "conflicts": [{"route": item.route, "winner": item.winner} for item in self.conflicts],
            "problems": [{"source": item.source, "message": item.message} for item in self.problems],
            "ignored": list(self.ignored),
            "certificates": self.certificates.describe(),
            "stripped_request_headers": sorted(name.decode("latin-1") for name in self.stripped_headers),
        }


class TableHolder:
    """Publishes the current table; readers take ``current`` once per request."""

    __slots__ = ("current", "loaded")

    def __init__(self) -> None:
        self.current = RouteTable()
        self.loaded = False
        """True once the first table built from a provider's snapshot is in place."""

    def publish(self, table: RouteTable) -> RouteTable:
        """Swap in ``table`` (one assignment: atomic for every reader); return the old one."""
        previous, self.current = self.current, table
        self.loaded = True
        return previous
