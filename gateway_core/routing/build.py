"""Build a route table from a snapshot: translate, bind, merge, index.

Each served Ingress compiles on its own. One whose annotations, plugins or spec are bad is
rejected: if a previous version of it was good, that version keeps serving (re-resolved
against today's Services and endpoints); otherwise its routes answer 503. Then the routes of
all Ingresses merge into one index, the oldest Ingress winning a conflicting host and path.
Nothing here can fail the whole table because of one object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway_core.collector import collector_paused
from gateway_core.manifests.annotations import LEGACY_CLASS
from gateway_core.manifests.objects import Ingress
from gateway_core.manifests.snapshot import Snapshot
from gateway_core.manifests.translate import (
    ClassPolicy,
    ObjectIndex,
    RouteKind,
    RouteSpec,
    is_served,
    translate_ingress,
)
from gateway_core.manifests.upstream_policy import DEFAULT_POLICY, LoadBalancing, TimeoutConfig
from gateway_core.messages import Balancer, Endpoint, RouteInfo, Timeouts
from gateway_core.plugin_api import PluginSpec
from gateway_core.routing.binding import BindingPolicy, BoundPlugin, PluginInstances, resolve_plugins
from gateway_core.routing.certificates import table_certificates
from gateway_core.routing.matching import HostIndex, exact_key, prefix_key
from gateway_core.routing.table import Backend, Conflict, RejectedIngress, Route, RouteTable
from gateway_core.tls.contexts import ServerTlsOptions

BalancerFactory = Callable[[tuple[Endpoint, ...], LoadBalancing], Balancer]
"""Makes the balancer of one backend: its ready endpoints, the route's balancing config."""
RouteValidator = Callable[[RouteInfo, Sequence[str]], Sequence[str]]


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """Everything a build needs besides the snapshot and the previous table."""

    specs: Mapping[str, PluginSpec[Any]]
    balancer_factory: BalancerFactory
    class_policy: ClassPolicy = field(default_factory=ClassPolicy)
    binding: BindingPolicy = field(default_factory=BindingPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    validate: RouteValidator | None = None
    """Extra route checks (the ``gateway_route_validate`` hook); problems reject the Ingress."""
    known_annotations: frozenset[str] = frozenset()
    tls: ServerTlsOptions = field(default_factory=ServerTlsOptions)
    """How the server contexts of ``spec.tls`` certificates are built (the ``tls`` settings)."""


class _Compiler:
    def __init__(self, index: ObjectIndex, options: BuildOptions, instances: PluginInstances) -> None:
        self.index = index
        self.options = options
        self.instances = instances

    def compile(self, ingress: Ingress) -> tuple[list[Route], list[str], list[RouteSpec]]:
        """The Ingress's routes, or the problems that reject it (and the specs it declared)."""
        options = self.options
        translation = translate_ingress(ingress, self.index, known_annotations=options.known_annotations)
        problems = list(translation.problems)
        resolved = resolve_plugins(translation.plugins, options.binding, options.specs)
        problems.extend(resolved.problems)
        specs = list(translation.routes)
        if problems:
            return [], problems, specs
        namespace = ingress.namespace

        def secrets(name: str) -> Mapping[str, bytes] | None:
            secret = self.index.secret(namespace, name)
            return secret.decoded() if secret is not None else None

        routes = []
        for spec in specs:
            bound, bind_problems = self.instances.bind(spec.info, resolved.plugins, secrets)
            problems.extend(bind_problems)
            if options.validate is not None:
                problems.extend(options.validate(spec.info, [item.spec.name for item in bound]))
            routes.append(self.route(spec, bound))
        if problems:
            return [], problems, specs
        return routes, [], specs

    def route(self, spec: RouteSpec, plugins: Sequence[BoundPlugin]) -> Route:
        """A servable route: its backends' balancers made, its timeouts resolved."""
        make = self.options.balancer_factory
        balancing = spec.policy.load_balance
        return Route(
            spec,
            balancer=make(spec.backend.endpoints, balancing),
            timeouts=route_timeouts(self.options.timeouts, spec.policy.timeouts),
            plugins=plugins,
            canaries=[
                (canary.config, Backend(canary.backend, make(canary.backend.endpoints, balancing)))
                for canary in spec.canaries
            ],
            mirrors=[
                (mirror.config, Backend(mirror.backend, make(mirror.backend.endpoints, DEFAULT_POLICY.load_balance)))
                for mirror in spec.mirrors
            ],
        )


def route_timeouts(defaults: Timeouts, configured: TimeoutConfig) -> Timeouts:
    """The route's timeouts: each one its annotation sets, else the gateway's default."""
    return Timeouts(
        connect=configured.connect or defaults.connect,
        read=configured.read or defaults.read,
        write=configured.write or defaults.write,
    )


def build_table(snapshot: Snapshot, options: BuildOptions, previous: RouteTable | None = None) -> RouteTable:
    """A new table for ``snapshot``; ``previous`` supplies last good Ingresses and plugin objects."""
    with collector_paused():
        return _build_table(snapshot, options, previous)


def _build_table(snapshot: Snapshot, options: BuildOptions, previous: RouteTable | None) -> RouteTable:
    started = time.perf_counter()
    index = ObjectIndex(snapshot.objects)
    instances = PluginInstances(previous.instances if previous is not None else None)
    compiler = _Compiler(index, options, instances)
    previous_good = previous.last_good if previous is not None else {}
    routes: list[Route] = []
    rejected: dict[str, RejectedIngress] = {}
    last_good: dict[str, Ingress] = {}
    ignored: list[str] = []
    unreadable = _unreadable_ingresses(snapshot, index)
    for ref, reason in unreadable.items():
        # An Ingress whose new version does not even parse keeps its last good version too.
        serving = False
        fallback = previous_good.get(ref)
        if fallback is not None:
            compiled, fallback_problems, _ = compiler.compile(fallback)
            if not fallback_problems:
                last_good[ref] = fallback
                routes.extend(compiled)
                serving = True
        rejected[ref] = RejectedIngress(ref, (reason,), serving_last_good=serving)
    for ingress in index.ingresses:
        ref = f"{ingress.namespace}/{ingress.name}"
        if not is_served(ingress, index, options.class_policy):
            named = ingress.spec.ingress_class_name or ingress.metadata.annotations.get(LEGACY_CLASS)
            ignored.append(f"{ref} ({named or 'no class'})")
            continue
        compiled, problems, specs = compiler.compile(ingress)
        if not problems:
            last_good[ref] = ingress
            routes.extend(compiled)
            continue
        fallback = previous_good.get(ref)
        if fallback is not None and fallback != ingress:
            compiled, fallback_problems, _ = compiler.compile(fallback)
            if not fallback_problems:
                last_good[ref] = fallback
                routes.extend(compiled)
                rejected[ref] = RejectedIngress(ref, tuple(problems), serving_last_good=True)
                continue
        reason = "Ingress rejected: " + "; ".join(problems)
        routes.extend(
            Route(
                spec,
                balancer=options.balancer_factory((), DEFAULT_POLICY.load_balance),
                timeouts=options.timeouts,
                unavailable=reason,
            )
            for spec in specs
        )
        rejected[ref] = RejectedIngress(ref, tuple(problems), serving_last_good=False)
    certificates = table_certificates(
        last_good, routes, index, previous=previous.certificates if previous is not None else None, options=options.tls
    )
    host_index, served, conflicts = _merge(routes)
    return RouteTable(
        stripped_headers=_owned_headers(options.specs, instances),
        index=host_index,
        routes=tuple(served),
        rejected=rejected,
        conflicts=tuple(conflicts),
        problems=snapshot.problems,
        ignored=tuple(ignored),
        last_good=last_good,
        certificates=certificates,
        instances=instances.current,
        generation=(previous.generation + 1) if previous is not None else 1,
        build_seconds=time.perf_counter() - started,
    )


def _owned_headers(specs: Mapping[str, PluginSpec[Any]], instances: PluginInstances) -> frozenset[bytes]:
    """Every request header a plugin owns: each installed plugin's own, and those its bindings name."""
    names: set[str] = set()
    for spec in specs.values():
        names |= spec.headers_owned_by()
    for bound in instances.current.values():
        names |= bound.spec.headers_owned_by(bound.config)
    return frozenset(name.encode("latin-1") for name in names)


def _unreadable_ingresses(snapshot: Snapshot, index: ObjectIndex) -> dict[str, str]:
    """``namespace/name`` -> reason, for Ingresses the snapshot could not parse."""
    present = {f"{ingress.namespace}/{ingress.name}" for ingress in index.ingresses}
    found: dict[str, str] = {}
    for problem in snapshot.problems:
        if problem.object_ref is not None and problem.object_ref[0] == "Ingress":
            ref = f"{problem.object_ref[1]}/{problem.object_ref[2]}"
            if ref not in present:
                found.setdefault(ref, problem.message)
    return found


def _merge(routes: list[Route]) -> tuple[HostIndex[Route], list[Route], list[Conflict]]:
    """Index routes; on a conflicting host and path the oldest Ingress wins."""
    routes.sort(key=lambda route: route.spec.age)
    index: HostIndex[Route] = HostIndex()
    served: list[Route] = []
    conflicts: list[Conflict] = []
    defaults: list[Route] = []
    for route in routes:
        spec = route.spec
        if spec.kind is RouteKind.DEFAULT:
            defaults.append(route)
            continue
        bucket = index.bucket(spec.host)
        winner: Route | None
        if spec.kind is RouteKind.HOST_DEFAULT:
            winner = bucket.fallback
            if winner is None:
                bucket.fallback = route
        else:
            table = bucket.exact if spec.match == "Exact" else bucket.prefix
            key = exact_key(spec.path) if spec.match == "Exact" else prefix_key(spec.path)
            winner = table.get(key)
            if winner is None:
                table[key] = route
        if winner is None:
            served.append(route)
        else:
            conflicts.append(Conflict(route=spec.info.id, winner=winner.info.id))
    if defaults:
        # The default backend of an Ingress without rules (which exists for that) wins,
        # then the oldest.
        default = min(defaults, key=lambda route: (not route.spec.standalone, route.spec.age))
        index.default = default
        served.append(default)
        conflicts.extend(Conflict(route=r.info.id, winner=default.info.id) for r in defaults if r is not default)
    return index, served, conflicts
