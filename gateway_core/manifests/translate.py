"""Ingress objects to route specs, with the Kubernetes Ingress semantics.

One Ingress translates on its own against an :class:`ObjectIndex` of everything else
(Services, EndpointSlices, IngressClasses). Merging Ingresses into one table (oldest wins a
conflicting path) is the routing layer's job; so is checking plugin configs against the
installed plugins.

A problem that makes an Ingress unsafe to serve (an invalid host, a resource backend, a
malformed annotation) is reported in ``IngressTranslation.problems`` and the Ingress is
rejected; its routes are still declared (a backend it cannot use gets no endpoints), so they
answer 503 while it is rejected. A backend that merely has nowhere to go (missing Service,
no ready endpoint) is not a rejection: its route exists and answers 503 with the reason.

Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC

from gateway_core.manifests.annotations import LEGACY_CLASS, PluginAnnotations, parse_plugin_annotations
from gateway_core.manifests.objects import (
    EndpointSlice,
    Ingress,
    IngressBackend,
    IngressClass,
    KubeObject,
    Secret,
    Service,
    ServicePort,
)
from gateway_core.manifests.tls_policy import DEFAULT_TLS, TLS_ANNOTATIONS, IngressTls, parse_tls_annotations
from gateway_core.manifests.upstream_policy import (
    DEFAULT_POLICY,
    UPSTREAM_ANNOTATIONS,
    CanaryConfig,
    MirrorConfig,
    ServiceRef,
    UpstreamPolicy,
    parse_upstream_policy,
)
from gateway_core.messages import Endpoint, RouteInfo

DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


class RouteKind(enum.Enum):
    """Where a route sits in the table."""

    RULE = "rule"
    """A host/path rule."""
    HOST_DEFAULT = "host-default"
    """The Ingress ``defaultBackend`` for unmatched paths on one of its hosts."""
    DEFAULT = "default"
    """The Ingress ``defaultBackend`` for requests no host or rule matches."""


@dataclass(frozen=True, slots=True)
class ClassPolicy:
    """Which Ingresses this gateway serves."""

    ingress_class: str = "meta-native"
    controller: str = "meta-native.io/gateway"
    watch_without_class: bool = True


@dataclass(frozen=True, slots=True)
class BackendTarget:
    """A resolved Service port: its ready endpoints, or why there are none."""

    namespace: str
    service: str
    port: str
    endpoints: tuple[Endpoint, ...]
    problem: str | None = None

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.service}:{self.port}"


@dataclass(frozen=True, slots=True)
class CanaryTarget:
    """A canary of a route: which requests it takes, and its resolved backend."""

    config: CanaryConfig
    backend: BackendTarget


@dataclass(frozen=True, slots=True)
class MirrorTarget:
    """A mirror of a route: which requests are copied, and its resolved backend."""

    config: MirrorConfig
    backend: BackendTarget


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route as the Ingress declares it, its backend resolved."""

    info: RouteInfo
    kind: RouteKind
    host: str
    """Lowercase host, ``*.suffix`` wildcard, or ``""`` for any host."""
    path: str
    match: str
    """``Exact`` or ``Prefix`` (``ImplementationSpecific`` is served as ``Prefix``)."""
    backend: BackendTarget
    age: tuple[int, str, str, str]
    """Sort key for conflicts: oldest ``creationTimestamp`` first, then namespace/name."""
    standalone: bool = False
    """The Ingress has no rules: its default backend is its whole purpose."""
    policy: UpstreamPolicy = DEFAULT_POLICY
    """Balancing, timeouts, retries and outlier detection from the Ingress's annotations."""
    canaries: tuple[CanaryTarget, ...] = ()
    mirrors: tuple[MirrorTarget, ...] = ()
    tls: IngressTls = DEFAULT_TLS
    """HTTPS redirect and backend TLS from the Ingress's annotations (``manifests.tls_policy``)."""


@dataclass(frozen=True, slots=True)
class IngressTranslation:
    """An Ingress's routes and plugin annotations, or the problems that reject it."""

    ingress: Ingress
    routes: tuple[RouteSpec, ...]
    plugins: PluginAnnotations
    problems: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.ingress.namespace}/{self.ingress.name}"


class ObjectIndex:
    """Lookups over one snapshot of objects, by the keys translation needs."""

    def __init__(self, objects: Iterable[KubeObject]) -> None:
        self.ingresses: list[Ingress] = []
        self.classes: dict[str, IngressClass] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], list[EndpointSlice]] = {}
        self.secrets: dict[tuple[str, str], Secret] = {}
        for obj in objects:
            if isinstance(obj, Ingress):
                self.ingresses.append(obj)
            elif isinstance(obj, IngressClass):
                self.classes[obj.name] = obj
            elif isinstance(obj, Service):
                self.services[obj.namespace, obj.name] = obj
            elif isinstance(obj, EndpointSlice):
                # The label selector is the contract; filter here too (cheap, and correct
                # against API servers or mocks that ignore selectors).
                service = obj.service_name
                if service:
                    self.slices.setdefault((obj.namespace, service), []).append(obj)
            elif isinstance(obj, Secret):
                self.secrets[obj.namespace, obj.name] = obj

    def secret(self, namespace: str, name: str) -> Secret | None:
        return self.secrets.get((namespace, name))


def is_served(ingress: Ingress, index: ObjectIndex, policy: ClassPolicy) -> bool:
    """Whether this gateway serves ``ingress``, by its class (DESIGN §5)."""
    name = ingress.spec.ingress_class_name or ingress.metadata.annotations.get(LEGACY_CLASS)
    if not name:
        if policy.watch_without_class:
            return True
        return any(
            ic.spec.controller == policy.controller and ic.metadata.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"
            for ic in index.classes.values()
        )
    if name == policy.ingress_class:
        return True
    ingress_class = index.classes.get(name)
    return ingress_class is not None and ingress_class.spec.controller == policy.controller


def translate_ingress(
    ingress: Ingress, index: ObjectIndex, *, known_annotations: frozenset[str] = frozenset()
) -> IngressTranslation:
    """Translate one Ingress. Never raises for bad content: problems are returned."""
    namespace, name = ingress.namespace, ingress.name
    annotations = ingress.metadata.annotations
    plugins = parse_plugin_annotations(
        annotations, known_keys=known_annotations | UPSTREAM_ANNOTATIONS | TLS_ANNOTATIONS
    )
    policy, policy_problems = parse_upstream_policy(annotations)
    tls, tls_problems = parse_tls_annotations(annotations, namespace, index.secret)
    problems = [*plugins.problems, *policy_problems, *tls_problems]
    canaries = tuple(
        CanaryTarget(config, _over_tls(_resolve_ref(config, namespace, index), tls)) for config in policy.canaries
    )
    mirrors = tuple(
        MirrorTarget(config, _over_tls(_resolve_ref(config, namespace, index), tls)) for config in policy.mirrors
    )
    age = _age(ingress)
    routes: list[RouteSpec] = []
    hosts: list[str] = []

    def add(kind: RouteKind, host: str, path: str, declared: str, backend: IngressBackend, where: str) -> None:
        target = _resolve_backend(backend, namespace, index, where, problems)
        if target is None:
            # The Ingress is rejected (the problem is recorded), but the route is still
            # declared: while rejected, it answers 503 rather than falling through to others.
            service = backend.service.name if backend.service is not None else ""
            target = BackendTarget(namespace, service, "", (), problems[-1])
        target = _over_tls(target, tls)
        match = "Exact" if declared == "Exact" else "Prefix"
        if kind is RouteKind.RULE:
            route_id = f"{namespace}/{name}:{host or '*'}:{declared}:{path}"
        elif kind is RouteKind.HOST_DEFAULT:
            route_id = f"{namespace}/{name}:{host}:default"
        else:
            route_id = f"{namespace}/{name}:default"
        info = RouteInfo(
            id=route_id,
            namespace=namespace,
            ingress=name,
            host=host or "*",
            path=path,
            path_type=declared,
            service=target.service,
        )
        standalone = not ingress.spec.rules
        routes.append(
            RouteSpec(
                info=info,
                kind=kind,
                host=host,
                path=path,
                match=match,
                backend=target,
                age=age,
                standalone=standalone,
                policy=policy,
                canaries=canaries,
                mirrors=mirrors,
                tls=tls,
            )
        )

    for rule_index, rule in enumerate(ingress.spec.rules):
        where = f"spec.rules[{rule_index}]"
        host = (rule.host or "").lower()
        if host and not _HOST.match(host):
            problems.append(
                f"{where}.host: {rule.host!r} is not a valid host (a DNS name, optionally '*.' + a DNS name)"
            )
            continue
        if host not in hosts:
            hosts.append(host)
        if rule.http is None:
            continue
        for path_index, http_path in enumerate(rule.http.paths):
            path_where = f"{where}.http.paths[{path_index}]"
            path = http_path.path or ""
            if not path and http_path.path_type == "ImplementationSpecific":
                path = "/"
            if not path.startswith("/"):
                problems.append(f"{path_where}.path: {http_path.path!r} must be an absolute path starting with '/'")
                continue
            add(RouteKind.RULE, host, path, http_path.path_type, http_path.backend, f"{path_where}.backend")

    default = ingress.spec.default_backend
    if default is not None:
        for host in hosts:
            if host:
                add(RouteKind.HOST_DEFAULT, host, "/", "Prefix", default, "spec.defaultBackend")
        add(RouteKind.DEFAULT, "", "/", "Prefix", default, "spec.defaultBackend")
    elif not ingress.spec.rules:
        problems.append("spec: an Ingress needs rules or a defaultBackend")

    return IngressTranslation(ingress=ingress, routes=tuple(routes), plugins=plugins, problems=tuple(problems))


def _over_tls(target: BackendTarget, tls: IngressTls) -> BackendTarget:
    """The target with its endpoints reached over HTTPS when the Ingress says so."""
    if tls.backend is None or not target.endpoints:
        return target
    return replace(target, endpoints=tls.upstream_endpoints(target.endpoints, target.service, target.namespace))


def _age(ingress: Ingress) -> tuple[int, str, str, str]:
    """The conflict sort key: oldest ``creationTimestamp`` first (compared in UTC), then namespace/name.

    Timestamps are compared as UTC ISO strings, so ``10:00+02:00`` is older than ``09:00Z``;
    a timestamp without a zone is taken as UTC, as the API server writes them.
    """
    namespace, name = ingress.namespace, ingress.name
    stamp = ingress.metadata.creation_timestamp
    if stamp is None:
        return (1, "", namespace, name)
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    return (0, stamp.isoformat(), namespace, name)


def _resolve_backend(
    backend: IngressBackend, namespace: str, index: ObjectIndex, where: str, problems: list[str]
) -> BackendTarget | None:
    if backend.resource is not None:
        problems.append(f"{where}.resource: resource backends are not supported; use a service backend")
        return None
    service_ref = backend.service
    if service_ref is None:
        problems.append(f"{where}: a backend must name a service")
        return None
    port_ref = service_ref.port
    if (port_ref.name is None) == (port_ref.number is None):
        problems.append(f"{where}.service.port: set exactly one of name and number")
        return None
    port_label = port_ref.name if port_ref.name is not None else str(port_ref.number)
    endpoints, problem = resolve_endpoints(namespace, service_ref.name, port_ref.name, port_ref.number, index)
    return BackendTarget(namespace, service_ref.name, port_label, endpoints, problem)


def _resolve_ref(ref: ServiceRef, namespace: str, index: ObjectIndex) -> BackendTarget:
    """A canary's or mirror's Service port. A missing Service is no rejection: it has no endpoints."""
    port_name = ref.port if isinstance(ref.port, str) else None
    port_number = ref.port if isinstance(ref.port, int) else None
    endpoints, problem = resolve_endpoints(namespace, ref.service, port_name, port_number, index)
    return BackendTarget(namespace, ref.service, str(ref.port), endpoints, problem)


def resolve_endpoints(
    namespace: str, service_name: str, port_name: str | None, port_number: int | None, index: ObjectIndex
) -> tuple[tuple[Endpoint, ...], str | None]:
    """The ready endpoints behind a Service port, sorted; or none and the reason.

    The Service port is found by number or name; the EndpointSlice port is the one with the
    same name as that Service port (what ``targetPort`` resolved to for each pod). Endpoints
    whose ``conditions.ready`` is false are left out (unknown counts as ready).
    """
    label = f"{namespace}/{service_name}"
    service = index.services.get((namespace, service_name))
    if service is None:
        return (), f"service {label} not found"
    port = _service_port(service, port_name, port_number)
    if service.spec.type == "ExternalName":
        if not service.spec.external_name:
            return (), f"service {label} is ExternalName without spec.externalName"
        number = port.port if port is not None else port_number
        if number is None:
            return (), f"service {label} has no port named {port_name!r}"
        return (Endpoint(service.spec.external_name.lower().rstrip("."), number),), None
    if port is None:
        wanted = repr(port_name) if port_name is not None else str(port_number)
        return (), f"service {label} has no port {wanted}"
    wanted_name = port.name or ""
    found: set[Endpoint] = set()
    for endpoint_slice in index.slices.get((namespace, service_name), ()):
        slice_port = next((p for p in endpoint_slice.ports or () if (p.name or "") == wanted_name), None)
        if slice_port is None or slice_port.port is None:
            continue
        for endpoint in endpoint_slice.endpoints:
            if endpoint.conditions.ready is False:
                continue
            for address in endpoint.addresses:
                found.add(Endpoint(address, slice_port.port))
    if not found:
        return (), f"service {label} has no ready endpoints for port {port.name or port.port}"
    return tuple(sorted(found, key=lambda e: (e.host, e.port))), None


def _service_port(service: Service, name: str | None, number: int | None) -> ServicePort | None:
    for port in service.spec.ports:
        if (name is not None and port.name == name) or (number is not None and port.port == number):
            return port
    return None
