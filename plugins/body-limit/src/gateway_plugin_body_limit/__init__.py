"""``body-limit``: a request body size limit, checked by Content-Length and while streaming."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_plugin_body_limit.config import BodyLimitConfig, parse_size
from gateway_plugin_body_limit.plugin import BodyLimit, ContentTooLargeError, LimitedBody

__all__ = ["SPEC", "BodyLimit", "BodyLimitConfig", "ContentTooLargeError", "LimitedBody", "parse_size"]

SPEC: PluginSpec[BodyLimitConfig] = PluginSpec(
    name="body-limit",
    factory=BodyLimit.from_binding,
    config_model=BodyLimitConfig,
    priority=2200,
    version="0.1.0",
    description="Request body size limit: 413 from Content-Length before reading, or mid-stream for chunked bodies.",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
