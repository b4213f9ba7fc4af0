"""``headers``: set, add and remove request headers (upstream) and response headers (client)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_plugin_headers.config import HeadersConfig, RequestEdits, ResponseEdits
from gateway_plugin_headers.plugin import HeaderEdits, from_binding
from gateway_plugin_headers.template import VARIABLES

__all__ = ["SPEC", "VARIABLES", "HeaderEdits", "HeadersConfig", "RequestEdits", "ResponseEdits"]

SPEC: PluginSpec[HeadersConfig] = PluginSpec(
    name="headers",
    factory=from_binding,
    config_model=HeadersConfig,
    priority=100,
    version="0.1.0",
    description="Set, add and remove request headers (to the upstream) and response headers (to the client).",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
