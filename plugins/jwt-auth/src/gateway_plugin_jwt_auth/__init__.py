"""``jwt-auth``: JWT bearer tokens verified with keys from a Secret or a JWKS URL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_core.plugin_api import IDENTITY_HEADER
from gateway_plugin_jwt_auth.config import JwtAuthConfig
from gateway_plugin_jwt_auth.plugin import JwtAuth

__all__ = ["SPEC", "JwtAuth", "JwtAuthConfig"]

SPEC: PluginSpec[JwtAuthConfig] = PluginSpec(
    name="jwt-auth",
    factory=JwtAuth.from_binding,
    config_model=JwtAuthConfig,
    priority=2000,
    version="0.1.0",
    description="JWT bearer tokens (RS/PS/ES/EdDSA, or HS with a shared secret) verified with keys from a "
    "Secret or a JWKS URL; identity and chosen claims forwarded in headers.",
    owned_headers=(IDENTITY_HEADER,),
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
