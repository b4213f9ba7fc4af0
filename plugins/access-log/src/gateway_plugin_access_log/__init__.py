"""``access-log``: one JSON line per request, written by a background thread, never in the way."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from gateway_core import GatewaySettings, PluginSpec, hookimpl
from gateway_plugin_access_log.config import AccessLogConfig
from gateway_plugin_access_log.plugin import AccessLog
from gateway_plugin_access_log.writer import OUTPUTS

__all__ = ["SPEC", "AccessLog", "AccessLogConfig"]

SPEC: PluginSpec[AccessLogConfig] = PluginSpec(
    name="access-log",
    factory=AccessLog.from_binding,
    config_model=AccessLogConfig,
    priority=-1000,
    version="0.1.0",
    description="One JSON line per request (fields, client headers) to stdout, stderr or a file, off the hot path.",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]


@hookimpl
async def gateway_shutdown(settings: GatewaySettings) -> None:
    """Write every queued line before the worker exits."""
    await asyncio.to_thread(OUTPUTS.stop_all)
