"""``rate-limit``: limit requests per client IP, header or identity, in memory or in Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import GatewaySettings, PluginSpec, hookimpl
from gateway_plugin_rate_limit.config import RateLimitConfig
from gateway_plugin_rate_limit.plugin import RateLimit
from gateway_plugin_rate_limit.storage import STORAGES

__all__ = ["SPEC", "RateLimit", "RateLimitConfig"]

SPEC: PluginSpec[RateLimitConfig] = PluginSpec(
    name="rate-limit",
    factory=RateLimit.from_binding,
    config_model=RateLimitConfig,
    priority=1000,
    version="0.1.0",
    description="Limits requests per client IP, header or identity (fixed, sliding or moving window; memory or Redis).",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]


@hookimpl
async def gateway_shutdown(settings: GatewaySettings) -> None:
    """Close this worker's storage connections after its last request."""
    await STORAGES.close_loop()
