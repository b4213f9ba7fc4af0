"""``basic-auth``: HTTP Basic authentication against an htpasswd file kept in a Kubernetes Secret."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_core.plugin_api import IDENTITY_HEADER
from gateway_plugin_basic_auth.bcrypt_pool import BcryptPool
from gateway_plugin_basic_auth.config import BasicAuthConfig
from gateway_plugin_basic_auth.plugin import BasicAuth

__all__ = ["SPEC", "BasicAuth", "BasicAuthConfig", "BcryptPool"]

SPEC: PluginSpec[BasicAuthConfig] = PluginSpec(
    name="basic-auth",
    # One pool for every route of the process; its threads start on the first bcrypt check.
    factory=partial(BasicAuth.from_binding, pool=BcryptPool()),
    config_model=BasicAuthConfig,
    priority=2000,
    version="0.1.0",
    description="HTTP Basic authentication against an htpasswd Secret (bcrypt, {SHA}); credentials removed.",
    owned_headers=(IDENTITY_HEADER,),
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
