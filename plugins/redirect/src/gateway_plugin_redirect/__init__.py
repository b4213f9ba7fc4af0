"""``redirect``: route redirects, an application root, HTTP to HTTPS, and HSTS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_plugin_redirect.config import HstsConfig, RedirectConfig
from gateway_plugin_redirect.plugin import Hsts, Redirect, RedirectWithHsts

__all__ = ["SPEC", "Hsts", "HstsConfig", "Redirect", "RedirectConfig", "RedirectWithHsts"]

SPEC: PluginSpec[RedirectConfig] = PluginSpec(
    name="redirect",
    factory=Redirect.from_binding,
    config_model=RedirectConfig,
    priority=2400,
    version="0.1.0",
    description="Redirects a route, its root or plain HTTP (to HTTPS); adds HSTS to HTTPS responses.",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
