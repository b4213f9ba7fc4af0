# mypy: disable-error-code="empty-body"
"""Every hookspec of the assembly plane, and nothing else.

Hooks run at start-up and on configuration changes, never per request. Hooks marked
"awaited" may return an awaitable; the host awaits every result. No ``firstresult`` hook
may return an awaitable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from gateway_core.messages import RouteInfo
from gateway_core.plugin_api import PluginSpec

if TYPE_CHECKING:
    import click
    from fastapi import APIRouter

    from gateway_core.settings import GatewaySettings

PROJECT = "gateway_core"
"""The pluggy project name, and the entry-point group plugins are published under."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a function or method as the implementation of the hookspec of the same name."""

ASGIApp = Callable[..., Awaitable[None]]


@hookspec
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    """Return the request-plane plugins this distribution provides."""


@hookspec
def gateway_route_validate(route: RouteInfo, plugins: Sequence[str]) -> Sequence[str] | None:
    """Check a route before it is served; return problems to reject its Ingress.

    :param route: the route about to be served.
    :param plugins: names of the plugins bound to it, in run order.
    """


@hookspec
def gateway_routes_loaded(
    added: Sequence[RouteInfo], removed: Sequence[RouteInfo], rejected: Sequence[tuple[str, Sequence[str]]]
) -> Awaitable[None] | None:
    """Observe a new route table (awaited).

    :param added: routes that were not in the previous table.
    :param removed: routes that are gone.
    :param rejected: ``(ingress namespace/name, reasons)`` for every rejected Ingress.
    """


@hookspec
def gateway_startup(settings: GatewaySettings) -> Awaitable[None] | None:
    """Run once per worker before it serves traffic (awaited)."""


@hookspec
def gateway_shutdown(settings: GatewaySettings) -> Awaitable[None] | None:
    """Run once per worker after the last request finished (awaited)."""


@hookspec
def gateway_admin_routers() -> Sequence[APIRouter]:
    """Return FastAPI routers to mount on the admin listener."""


@hookspec
def gateway_cli_commands() -> Sequence[click.Command]:
    """Return click commands to add to the ``gateway`` CLI."""


@hookspec
def gateway_asgi_wrappers() -> Sequence[Callable[[ASGIApp], ASGIApp]]:
    """Return ASGI middleware factories to wrap the proxy app (first returned is outermost)."""


@hookspec(firstresult=True)
def gateway_route_source(settings: GatewaySettings) -> object | None:
    """Return the route source (provider) to use; the first non-None result wins.

    The built-in providers are ``trylast`` implementations, so any plugin can replace them.
    """
