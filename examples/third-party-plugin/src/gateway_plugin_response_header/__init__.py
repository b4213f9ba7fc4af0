"""``response-header``: add a header with a configured value to upstream responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_plugin_response_header.config import ResponseHeaderConfig
from gateway_plugin_response_header.plugin import ResponseHeader

__all__ = ["SPEC", "ResponseHeader", "ResponseHeaderConfig"]

SPEC: PluginSpec[ResponseHeaderConfig] = PluginSpec(
    name="response-header",
    factory=ResponseHeader,
    config_model=ResponseHeaderConfig,
    priority=100,
    version="0.1.0",
    description="Add a header with a configured value to upstream responses.",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
