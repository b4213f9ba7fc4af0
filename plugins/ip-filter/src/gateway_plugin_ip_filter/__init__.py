"""``ip-filter``: allow and deny lists of client CIDRs, checked on the trusted-proxy client address."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_plugin_ip_filter.config import IpFilterConfig
from gateway_plugin_ip_filter.networks import AddressSet
from gateway_plugin_ip_filter.plugin import IpFilter

__all__ = ["SPEC", "AddressSet", "IpFilter", "IpFilterConfig"]

SPEC: PluginSpec[IpFilterConfig] = PluginSpec(
    name="ip-filter",
    factory=IpFilter.from_binding,
    config_model=IpFilterConfig,
    priority=2600,
    version="0.1.0",
    description="Allow and deny lists of client CIDRs (IPv4 and IPv6); refused clients get 403.",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
