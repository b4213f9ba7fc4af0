"""``cors``: Cross-Origin Resource Sharing, with browser preflights answered by the gateway."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_plugin_cors.config import CorsConfig
from gateway_plugin_cors.plugin import NAME, Cors

__all__ = ["SPEC", "Cors", "CorsConfig"]

SPEC: PluginSpec[CorsConfig] = PluginSpec(
    name=NAME,
    factory=Cors.from_binding,
    config_model=CorsConfig,
    # Before the authentication plugins (2000): a preflight carries no credentials.
    priority=2500,
    version="0.1.0",
    description="CORS: preflights answered at the edge, Access-Control-* response headers per allowed origin.",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
