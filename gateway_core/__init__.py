"""Meta-Native Gateway: a plugin-centric API gateway for Kubernetes Ingress.

The names here are the public API a plugin author or an embedding program uses; everything
else is internal and may change between minor versions.
"""

from gateway_core.app import Gateway, create_app
from gateway_core.errors import GatewayError, PluginConfigError, PluginError
from gateway_core.hookspecs import hookimpl
from gateway_core.manifests.snapshot import Problem, Snapshot
from gateway_core.messages import (
    Endpoint,
    Headers,
    LocalResponse,
    Outcome,
    RequestContext,
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
from gateway_core.providers.base import Publish, RouteSource
from gateway_core.settings import GatewaySettings, load_settings

__all__ = [
    "IDENTITY_HEADER",
    "RESERVED_REQUEST_HEADERS",
    "Binding",
    "CallNext",
    "EmptyConfig",
    "Endpoint",
    "Gateway",
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
    "Problem",
    "Publish",
    "RequestContext",
    "RouteInfo",
    "RouteSource",
    "Snapshot",
    "StashKey",
    "Timeouts",
    "UpstreamRequest",
    "UpstreamResponse",
    "create_app",
    "hookimpl",
    "load_settings",
    "set_identity",
]
