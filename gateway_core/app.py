"""Assembly: ``create_app(settings, ...)`` wires a route source, the route table, the
transport, the proxy and the admin app into one :class:`Gateway`.

The proxy app handles the ASGI lifespan (start the source, await startup hooks; on
shutdown close the pools and await shutdown hooks), so a ``Gateway.proxy`` runs under any
ASGI server. Table builds run in a worker thread, coalesced: while one builds, only the
newest snapshot waits, and the swap is one assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pluggy
from fastapi import FastAPI

from gateway_core import hookspecs
from gateway_core.admin import create_admin_app
from gateway_core.collector import freeze_startup_objects
from gateway_core.errors import ConfigError
from gateway_core.manifests.snapshot import Snapshot
from gateway_core.manifests.translate import ClassPolicy
from gateway_core.messages import RouteInfo, Timeouts
from gateway_core.metrics import GatewayMetrics
from gateway_core.pipeline import Pipeline
from gateway_core.plugin_api import PluginSpec
from gateway_core.plugin_manager import collect_plugin_specs, get_plugin_manager
from gateway_core.providers.base import RouteSource
from gateway_core.providers.file import ManifestDirectory
from gateway_core.proxy import ASGIApp, ProxyApp, Receive, Scope, Send
from gateway_core.request_head import TrustedProxies
from gateway_core.routing.binding import BindingPolicy
from gateway_core.routing.build import BalancerFactory, BuildOptions, build_table
from gateway_core.routing.table import RouteTable, TableHolder
from gateway_core.settings import GatewaySettings
from gateway_core.tls.contexts import ServerTlsOptions
from gateway_core.tls.edge import HstsMiddleware, HttpsRedirect, hsts_value
from gateway_core.tls.listener import ListenerTls, generated_default_certificate, load_default_certificate
from gateway_core.transport.balancing import Balancers
from gateway_core.transport.base import Transport
from gateway_core.transport.endpoint_state import EndpointStates
from gateway_core.transport.mirror import Mirrors
from gateway_core.transport.pool import ConnectionPool
from gateway_core.websocket_proxy import WebSocketProxy

logger = logging.getLogger("gateway_core")

FIRST_TABLE_WAIT = 10.0
"""Seconds start-up waits for the route source's first table before serving anyway."""


class BuiltinSources:
    """The built-in route source, offered through the same hook as any plugin's (``trylast``)."""

    @hookspecs.hookimpl(trylast=True)
    def gateway_route_source(self, settings: GatewaySettings) -> RouteSource | None:
        if settings.kubernetes.enabled:
            if settings.manifests.dir:
                raise ConfigError(
                    "two route sources: give either the Kubernetes API (--kubernetes) or a manifests "
                    "directory (--manifests DIR), not both"
                )
            from gateway_core.providers.kubernetes import KubernetesSource  # imports the kubernetes client

            return KubernetesSource(settings)
        if settings.manifests.dir:
            if not Path(settings.manifests.dir).is_dir():
                raise ConfigError(f"manifests directory {settings.manifests.dir} does not exist or is not a directory")
            return ManifestDirectory(
                settings.manifests.dir,
                default_namespace=settings.kubernetes.namespace,
                debounce=settings.manifests.debounce,
                force_polling=settings.manifests.force_polling,
            )
        return None


async def await_all(results: Iterable[Any]) -> None:
    """Await every hook result that is awaitable (hooks may be sync or async)."""
    for result in results:
        if inspect.isawaitable(result):
            await result


def make_transport(settings: GatewaySettings) -> Transport:
    """The upstream transport the settings choose."""
    upstream = settings.gateway
    if upstream.transport == "httpx":
        from gateway_core.transport.httpx_transport import HttpxTransport

        return HttpxTransport(
            max_idle=upstream.max_idle_conns,
            idle_timeout=upstream.idle_conn_timeout,
            keep_alive=upstream.enable_keep_alive,
        )
    return ConnectionPool(
        max_idle=upstream.max_idle_conns if upstream.enable_keep_alive else 0,
        idle_timeout=upstream.idle_conn_timeout,
        keep_alive=upstream.enable_keep_alive,
    )


def build_options(
    settings: GatewaySettings,
    specs: dict[str, PluginSpec[Any]],
    pm: pluggy.PluginManager,
    balancers: BalancerFactory | None = None,
) -> BuildOptions:
    """Table-build options from settings, installed plugins and the validate hook."""
    upstream = settings.gateway

    def validate(route: RouteInfo, plugins: Sequence[str]) -> list[str]:
        problems: list[str] = []
        for result in pm.hook.gateway_route_validate(route=route, plugins=list(plugins)):
            problems.extend(result or ())
        return problems

    unknown = [name for name in settings.plugins.bound if name not in specs]
    if unknown:
        raise ConfigError(f"plugins.global names plugins that are not installed: {', '.join(unknown)}")
    return BuildOptions(
        specs=specs,
        balancer_factory=balancers or Balancers(EndpointStates()),
        class_policy=ClassPolicy(
            ingress_class=upstream.ingress_class,
            controller=upstream.controller_name,
            watch_without_class=upstream.watch_ingress_without_class,
        ),
        binding=BindingPolicy(bound=tuple(settings.plugins.bound), defaults=settings.plugins.config),
        timeouts=Timeouts(connect=upstream.connect_timeout, read=upstream.proxy_timeout, write=upstream.send_timeout),
        validate=validate,
        tls=ServerTlsOptions(min_version=settings.tls.min_version, ciphers=settings.tls.ciphers),
    )


class Gateway:
    """One gateway instance: its proxy and admin ASGI apps and their shared state."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        pm: pluggy.PluginManager,
        source: RouteSource,
        transport: Transport,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.pm = pm
        self.source = source
        self.transport = transport
        self.metrics = metrics or GatewayMetrics()
        self.specs = collect_plugin_specs(pm, disabled=settings.plugins.disabled)
        self.endpoints = EndpointStates()
        """Per-endpoint live numbers (outstanding, latency, ejections) of this worker."""
        self.options = build_options(settings, self.specs, pm, Balancers(self.endpoints))
        self.tables = TableHolder()
        self.mirrors = Mirrors(
            transport, preserve_host=settings.gateway.preserve_host, record=self.metrics.observe_mirror
        )
        pipeline = Pipeline(
            transport,
            preserve_host=settings.gateway.preserve_host,
            endpoints=self.endpoints,
            mirrors=self.mirrors,
            counters=self.metrics,
        )
        tls = settings.tls
        self._default_certificate = (
            load_default_certificate(tls.default_cert_file, tls.default_key_file, self.options.tls)
            if tls.default_cert_file
            else None
        )
        self._listener_tls: ListenerTls | None = None
        trusted = TrustedProxies(settings.server.trusted_proxies)
        proxy: ASGIApp = ProxyApp(
            tables=self.tables,
            pipeline=pipeline,
            metrics=self.metrics,
            trusted_proxies=trusted,
            read_timeout=settings.server.read_timeout,
            other=self._lifespan,
            https_redirect=HttpsRedirect(enabled=tls.ssl_redirect, status=tls.redirect_code, port=tls.redirect_port),
            websocket=WebSocketProxy(
                pipeline=pipeline,
                metrics=self.metrics,
                preserve_host=settings.gateway.preserve_host,
                idle_timeout=settings.gateway.websocket_idle_timeout,
                max_message_size=settings.gateway.websocket_max_message_size * 1024 * 1024,
            ),
        )
        for wrappers in reversed(pm.hook.gateway_asgi_wrappers()):
            for wrap in reversed(list(wrappers or ())):
                proxy = wrap(proxy)
        self.proxy = proxy
        """The proxy listener's ASGI app."""
        self.https_proxy = proxy
        """The HTTPS listener's: the same app, with HSTS added outermost (wrappers' answers get it too)."""
        if tls.hsts:
            value = hsts_value(
                tls.hsts_max_age, include_subdomains=tls.hsts_include_subdomains, preload=tls.hsts_preload
            )
            self.https_proxy = HstsMiddleware(proxy, value=value)
            if trusted:  # behind a TLS-terminating balancer, plain requests it marks as HTTPS get HSTS too
                self.proxy = HstsMiddleware(proxy, value=value, trusts=trusted.trusts)
        self.admin: FastAPI = create_admin_app(self)
        self._source_task: asyncio.Task[None] | None = None
        self._pending: Snapshot | None = None
        self._building = False
        self._first_table = asyncio.Event()
        self.started = False

    @property
    def ready(self) -> bool:
        """True once the first table from the route source is serving."""
        return self.tables.loaded

    def listener_tls(self) -> ListenerTls:
        """The HTTPS listener's TLS (made on first use): the default certificate, SNI from the table."""
        if self._listener_tls is None:
            default = self._default_certificate or generated_default_certificate(self.options.tls)
            self._listener_tls = ListenerTls(default, lambda: self.tables.current.certificates, self.options.tls)
        return self._listener_tls

    async def start(self, *, first_table_wait: float = FIRST_TABLE_WAIT) -> None:
        """Await startup hooks, start the route source and wait for its first table.

        The proxy listener accepts connections only once this returns, so a configured
        route is never answered 404 during start-up. If the source has not delivered within
        ``first_table_wait`` seconds (an unreachable API server), serving starts anyway and
        every request gets 503 ``not_ready`` until the first table is in.
        """
        if self.started:
            return
        self.started = True
        await await_all(self.pm.hook.gateway_startup(settings=self.settings))
        self._source_task = asyncio.create_task(self._run_source(), name="gateway-route-source")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(first_table_wait):
                await self._first_table.wait()
        if not self.tables.loaded:
            logger.warning("no route table after %gs; answering 503 until the route source delivers", first_table_wait)
        freeze_startup_objects()

    async def stop(self) -> None:
        """Stop the route source, close upstream connections, await shutdown hooks."""
        if not self.started:
            return
        self.started = False
        if self._source_task is not None:
            self._source_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._source_task
            self._source_task = None
        await self.mirrors.aclose()
        await self.transport.aclose()
        await await_all(self.pm.hook.gateway_shutdown(settings=self.settings))

    async def _run_source(self) -> None:
        while True:
            try:
                await self.source.run(self.apply)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the route source failed; restarting it in 1s (current routes keep serving)")
                await asyncio.sleep(1)

    async def apply(self, snapshot: Snapshot) -> None:
        """Build a table from ``snapshot`` and swap it in (coalescing bursts)."""
        self._pending = snapshot
        if self._building:
            return
        self._building = True
        try:
            while self._pending is not None:
                pending, self._pending = self._pending, None
                previous = self.tables.current if self.tables.loaded else None
                try:
                    table = await asyncio.to_thread(build_table, pending, self.options, previous)
                except Exception:
                    logger.exception("building the route table failed; the current table keeps serving")
                    self.metrics.table_rebuilds.labels("failed").inc()
                    continue
                self.tables.publish(table)
                self.endpoints.retain(table.endpoints())
                self._first_table.set()
                await self._announce(table, previous)
                await self._observe(table)
        finally:
            self._building = False

    async def _announce(self, table: RouteTable, previous: RouteTable | None) -> None:
        metrics = self.metrics
        metrics.table_rebuilds.labels("ok").inc()
        metrics.table_build_seconds.observe(table.build_seconds)
        metrics.routes.set(len(table.routes))
        metrics.rejected_ingresses.set(len(table.rejected))
        metrics.manifest_problems.set(len(table.problems))
        before = {route.info.id: route.info for route in previous.routes} if previous is not None else {}
        after = {route.info.id: route.info for route in table.routes}
        added = [info for key, info in after.items() if key not in before]
        removed = [info for key, info in before.items() if key not in after]
        old_rejected = previous.rejected if previous is not None else {}
        for ref, rejected in table.rejected.items():
            if old_rejected.get(ref) != rejected:
                logger.warning(
                    "Ingress %s rejected (%s): %s",
                    ref,
                    "serving its last good version" if rejected.serving_last_good else "its routes answer 503",
                    "; ".join(rejected.reasons),
                    extra={"ingress": ref},
                )
        for refused in table.certificates.new_problems(previous.certificates if previous is not None else None):
            logger.warning("certificate refused: %s", refused, extra={"ingress": refused.ingress})
        old_problems = set(previous.problems) if previous is not None else set()
        for problem in table.problems:
            if problem not in old_problems:
                logger.error("manifest problem: %s", problem)
        logger.info(
            "route table %d: %d routes (+%d -%d), %d rejected Ingresses, %d problems, built in %.1f ms",
            table.generation,
            len(table.routes),
            len(added),
            len(removed),
            len(table.rejected),
            len(table.problems),
            table.build_seconds * 1000,
        )
        rejections = [(ref, list(item.reasons)) for ref, item in table.rejected.items()]
        try:
            await await_all(self.pm.hook.gateway_routes_loaded(added=added, removed=removed, rejected=rejections))
        except Exception:
            logger.exception("a gateway_routes_loaded hook failed")

    async def _observe(self, table: RouteTable) -> None:
        """Hand the table to the source's optional ``table_built`` (status and Events)."""
        observer = getattr(self.source, "table_built", None)
        if observer is None:
            return
        try:
            await observer(table)
        except Exception:
            logger.exception("the route source failed to take the new route table")

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    logger.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    settings: GatewaySettings | None = None,
    *,
    plugins: Iterable[object] = (),
    route_source: RouteSource | None = None,
    transport: Transport | None = None,
    load_entry_points: bool = True,
    metrics: GatewayMetrics | None = None,
) -> Gateway:
    """A gateway from settings, with extra in-code ``plugins`` and an optional route source.

    Without ``route_source``, the ``gateway_route_source`` hook chooses one; the built-in
    answer is the Kubernetes API when ``settings.kubernetes.enabled``, else the manifests
    directory of ``settings.manifests.dir``.
    """
    settings = settings or GatewaySettings()
    pm = get_plugin_manager(
        plugins=[BuiltinSources(), *plugins], blocked=settings.plugins.disabled, load_entry_points=load_entry_points
    )
    source = route_source or pm.hook.gateway_route_source(settings=settings)
    if source is None:
        raise ConfigError(
            "no route source: give a manifests directory (--manifests DIR), watch the Kubernetes API "
            "(--kubernetes), or install a route-source plugin"
        )
    return Gateway(settings, pm=pm, source=source, transport=transport or make_transport(settings), metrics=metrics)
