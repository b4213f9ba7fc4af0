"""Meta-Native Gateway: a plugin-centric API gateway for Kubernetes Ingress.

The names in ``__all__`` are the public API: what a plugin author, a route-source author or
a program that builds its own gateway imports. They change only under the versioning and
deprecation policy of ``docs/reference/public-api.md`` (a test holds them to a recorded
snapshot, ``tests/public_api.json``). Every other module and name is internal and may change
in any release, even when it is importable.
"""

from gateway_core.app import Gateway, create_app, make_transport
from gateway_core.deprecation import GatewayDeprecationWarning
from gateway_core.errors import ConfigError, GatewayError, PluginConfigError, PluginError, UpstreamError
from gateway_core.hookspecs import hookimpl
from gateway_core.manifests.snapshot import Problem, Snapshot, build_snapshot
from gateway_core.messages import (
    BytesBody,
    Endpoint,
    Headers,
    LocalResponse,
    Outcome,
    RequestBody,
    RequestContext,
    ResponseBody,
    RouteInfo,
    StashKey,
    Timeouts,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway_core.plugin_api import (
    IDENTITY_HEADER,
    RESERVED_REQUEST_HEADERS,
    Binding,
    CallNext,
    EmptyConfig,
    HeaderName,
    IdentityConfig,
    OwnsHeaders,
    Plugin,
    PluginSpec,
    set_identity,
)
from gateway_core.plugin_manager import installed_version
from gateway_core.providers.base import Publish, RouteSource
from gateway_core.server import run as serve
from gateway_core.settings import GatewaySettings, load_settings
from gateway_core.transport.base import PoolStats, Transport

__version__ = installed_version()
"""The installed distribution's version (``meta-native-gateway``)."""

__all__ = [
    "IDENTITY_HEADER",
    "RESERVED_REQUEST_HEADERS",
    "Binding",
    "BytesBody",
    "CallNext",
    "ConfigError",
    "EmptyConfig",
    "Endpoint",
    "Gateway",
    "GatewayDeprecationWarning",
    "GatewayError",
    "GatewaySettings",
    "HeaderName",
    "Headers",
    "IdentityConfig",
    "LocalResponse",
    "Outcome",
    "OwnsHeaders",
    "Plugin",
    "PluginConfigError",
    "PluginError",
    "PluginSpec",
    "PoolStats",
    "Problem",
    "Publish",
    "RequestBody",
    "RequestContext",
    "ResponseBody",
    "RouteInfo",
    "RouteSource",
    "Snapshot",
    "StashKey",
    "Timeouts",
    "Transport",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamResponse",
    "build_snapshot",
    "create_app",
    "hookimpl",
    "load_settings",
    "make_transport",
    "serve",
    "set_identity",
]
