"""A custom gateway in one file: routes from a YAML file, tenants chosen by a header, rate limits.

    python tenant_gateway.py routes.yaml --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090 --workers 2

It is built from the public API of ``gateway_core`` only: a route source that reads a plain
routes file instead of Kubernetes objects, an in-code plugin (no entry point, no package),
and the first-party ``rate-limit`` plugin, assembled with ``create_app`` and served with
``serve`` (or by uvicorn: ``uvicorn --factory tenant_gateway:proxy_app``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import gateway_plugin_rate_limit
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from gateway_core import (
    Binding,
    ConfigError,
    Gateway,
    GatewayError,
    GatewaySettings,
    HeaderName,
    LocalResponse,
    Plugin,
    PluginSpec,
    Problem,
    Publish,
    RequestContext,
    Snapshot,
    build_snapshot,
    create_app,
    hookimpl,
    load_settings,
    serve,
)

logger = logging.getLogger("tenant_gateway")

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
"""A route or tenant name: lowercase letters, digits and '-' (it becomes an object name and a path segment)."""


# --- the routes file --------------------------------------------------------------------------

_PORT = {"name": "http", "port": 80}
"""The one port of every Service this program makes (the upstream ports are in the EndpointSlices)."""


class RouteEntry(BaseModel):
    """One entry of the routes file's ``routes`` list."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    host: str | None = Field(None, description="The Host to match; absent: any host.")
    path: str = Field("/", pattern=r"^/", description="Path prefix, matched segment by segment.")
    upstreams: list[str] = Field(min_length=1, description="Upstream addresses, IP:PORT ([IPv6]:PORT).")
    tenants: list[Name] = Field([], description="If set, the X-Tenant header must name one of them.")
    rate_limit: str | None = Field(None, description="Per tenant (else per client IP), e.g. 100/minute.")

    @field_validator("upstreams")
    @classmethod
    def _addresses(cls, upstreams: list[str]) -> list[str]:
        for upstream in upstreams:
            parse_upstream(upstream)
        return upstreams


def parse_upstream(address: str) -> tuple[str, int]:
    """``(ip, port)`` from ``IP:PORT`` or ``[IPv6]:PORT``; ValueError otherwise."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ip = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"{address!r} is not IP:PORT") from None
    if not 0 < number < 65536:
        raise ValueError(f"{address!r}: the port must be 1-65535")
    return str(ip), number


def route_documents(route: RouteEntry) -> list[dict[str, Any]]:
    """The Service, EndpointSlices and Ingress that say what ``route`` says, as manifests."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": route.name}, "spec": {"ports": [_PORT]}}
    by_port: dict[tuple[str, int], list[str]] = {}
    for upstream in route.upstreams:
        ip, port = parse_upstream(upstream)
        family = "IPv6" if ":" in ip else "IPv4"
        by_port.setdefault((family, port), []).append(ip)
    slices = [
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": f"{route.name}-{index}", "labels": {"kubernetes.io/service-name": route.name}},
            "addressType": family,
            "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": [ip]} for ip in ips],
        }
        for index, ((family, port), ips) in enumerate(by_port.items())
    ]
    plugins: dict[str, dict[str, Any]] = {}
    if route.tenants:
        plugins["tenant"] = {"tenants": route.tenants}
    if route.rate_limit:
        plugins["rate-limit"] = {"limit": route.rate_limit, "key": "identity"}
    annotations = {f"meta-native.io/plugin.{name}": json.dumps(config) for name, config in plugins.items()}
    if plugins:
        annotations["meta-native.io/plugins"] = ", ".join(plugins)
    backend = {"service": {"name": route.name, "port": {"name": "http"}}}
    rule: dict[str, Any] = {"http": {"paths": [{"path": route.path, "pathType": "Prefix", "backend": backend}]}}
    if route.host:
        rule["host"] = route.host
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": route.name, "annotations": annotations},
        "spec": {"rules": [rule]},
    }
    return [service, *slices, ingress]


# --- the route source -------------------------------------------------------------------------


class RoutesFile:
    """A route source: the routes of one YAML file, read again whenever its content changes.

    Each valid entry becomes a Service, its EndpointSlices and an Ingress, so the gateway
    routes them exactly as it routes Kubernetes objects. An invalid entry becomes a problem
    of the snapshot (logged, on the admin ``/routes`` page) and is left out; a file that
    cannot be read or parsed at all publishes nothing, so the last routes keep serving.
    """

    def __init__(self, path: Path, *, interval: float = 1.0, namespace: str = "default") -> None:
        self.path = path
        self.interval = interval
        self.namespace = namespace

    def load(self) -> Snapshot:
        """Read and translate the file; ConfigError when it cannot be read or is not a routes file."""
        try:
            text = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read routes file {self.path}: {exc.strerror}") from None
        return self.parse(text)

    def parse(self, text: bytes) -> Snapshot:
        """The snapshot of a routes file's text."""
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self.path}: invalid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict) or not isinstance(data.get("routes", []), list) or set(data) - {"routes"}:
            raise ConfigError(f"{self.path}: the file must be a mapping with one key, `routes`, holding a list")
        documents: list[tuple[str, dict[str, Any]]] = []
        problems: list[Problem] = []
        names: set[str] = set()
        for index, item in enumerate(data.get("routes", [])):
            source = f"{self.path.name}: routes[{index}]"
            try:
                route = RouteEntry.model_validate(item)
            except ValidationError as exc:
                reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
                problems.append(Problem(source, f"left out: {reasons}"))
                continue
            if route.name in names:
                problems.append(Problem(source, f"left out: a route named {route.name!r} comes earlier"))
                continue
            names.add(route.name)
            documents.extend((source, document) for document in route_documents(route))
        return build_snapshot(documents, default_namespace=self.namespace, problems=problems)

    async def run(self, publish: Publish) -> None:
        """Publish the routes now and after every change of the file's content."""
        published: bytes | None = None
        failure = ""
        while True:
            try:
                text = await asyncio.to_thread(self.path.read_bytes)
                snapshot = self.parse(text) if text != published else None
            except (OSError, ConfigError) as exc:
                error = str(exc) if isinstance(exc, ConfigError) else f"cannot read {self.path}: {exc.strerror}"
                if error != failure:
                    logger.error("%s; the current routes keep serving", error)
                failure = error
            else:
                failure = ""
                if snapshot is not None:
                    await publish(snapshot)
                    published = text
            await asyncio.sleep(self.interval)


# --- the tenant plugin ------------------------------------------------------------------------


class TenantConfig(BaseModel):
    """The ``tenant`` plugin's config: which tenants a route serves, and the header naming them."""

    model_config = ConfigDict(extra="forbid")

    tenants: list[Name] = Field(min_length=1, description="The tenants this route serves.")
    header: HeaderName = Field("X-Tenant", description="The request header that names the tenant.")


class TenantRouting(Plugin):
    """Admits the route's tenants only and sends each to its own part of the upstream.

    ``X-Tenant: acme`` on ``GET /orders/7`` goes upstream as ``GET /acme/orders/7``. The tenant
    becomes the request's identity, so ``rate-limit`` with ``key: identity`` counts per tenant.
    """

    def __init__(self, config: TenantConfig, binding: Binding) -> None:
        self.tenants = frozenset(config.tenants)
        self.header = config.header

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        tenant = ctx.request.headers.get(self.header)
        if tenant is None:
            return LocalResponse.error(400, "tenant_required", f"name your tenant in the {self.header} header")
        if tenant not in self.tenants:
            return LocalResponse.error(403, "unknown_tenant", "this route does not serve that tenant")
        ctx.identity = tenant
        ctx.request.target = f"/{tenant}".encode() + ctx.request.target
        return None


class TenantPlugin:
    """The in-code plugin: handed to ``create_app(plugins=[...])``, found without an entry point."""

    @hookimpl
    def gateway_plugin_specs(self) -> Sequence[PluginSpec[Any]]:
        spec = PluginSpec(
            name="tenant",
            factory=TenantRouting,
            config_model=TenantConfig,
            priority=1500,  # before rate-limit (1000), so it counts per tenant
            description="Admits the route's tenants (by header) and routes each to its own upstream path.",
        )
        return [spec]


# --- assembly ---------------------------------------------------------------------------------


def build_gateway(settings: GatewaySettings, *, routes: Path) -> Gateway:
    """This program's gateway: the routes file, the tenant plugin and rate-limit, nothing else."""
    return create_app(
        settings,
        plugins=[TenantPlugin(), gateway_plugin_rate_limit],
        route_source=RoutesFile(routes),
        load_entry_points=False,  # exactly these plugins, whatever else is installed
    )


def proxy_app() -> Callable[..., Awaitable[None]]:
    """The proxy as a plain ASGI app, for ``uvicorn --factory tenant_gateway:proxy_app``.

    Settings come from ``GATEWAY_*`` variables, the routes file from ``TENANT_GATEWAY_ROUTES``
    (default ``routes.yaml``). Only the proxy is served: no admin listener.
    """
    routes = Path(os.environ.get("TENANT_GATEWAY_ROUTES", "routes.yaml"))
    return build_gateway(load_settings(), routes=routes).proxy


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, check the setup, then serve until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(description="A gateway for the routes of a YAML file.")
    parser.add_argument("routes", type=Path, help="the routes file (YAML)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="proxy address (default :8080)")
    parser.add_argument("--https-listen", metavar="HOST:PORT", help="HTTPS address (default :8443; '' for none)")
    parser.add_argument("--admin-listen", metavar="HOST:PORT", help="admin address (default :9090)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument("--config", help="gateway settings file (YAML), see the settings reference")
    args = parser.parse_args(argv)
    server = {"addr": args.listen, "https_addr": args.https_listen, "workers": args.workers}
    overrides: dict[str, Any] = {"server": {key: value for key, value in server.items() if value is not None}}
    if args.admin_listen:
        overrides["metrics"] = {"addr": args.admin_listen}
    try:
        settings = load_settings(args.config, overrides)
        routes = args.routes.resolve()
        RoutesFile(routes).load()  # a missing or broken routes file stops us here, not in a worker
        factory = functools.partial(build_gateway, routes=routes)
        factory(settings)  # so do plugin errors
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return serve(settings, app_factory=factory)
    except OSError as exc:  # a port in use, an address not ours
        print(f"error: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
