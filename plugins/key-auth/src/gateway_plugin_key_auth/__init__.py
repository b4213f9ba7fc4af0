"""``key-auth``: API keys from a Kubernetes Secret, sent in a header or a query parameter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_core.plugin_api import IDENTITY_HEADER
from gateway_plugin_key_auth.config import KeyAuthConfig
from gateway_plugin_key_auth.plugin import KeyAuth

__all__ = ["SPEC", "KeyAuth", "KeyAuthConfig"]

SPEC: PluginSpec[KeyAuthConfig] = PluginSpec(
    name="key-auth",
    factory=KeyAuth.from_binding,
    config_model=KeyAuthConfig,
    priority=2000,
    version="0.1.0",
    description="API keys from a Secret, in a header or query parameter; removed before forwarding.",
    owned_headers=(IDENTITY_HEADER,),
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
