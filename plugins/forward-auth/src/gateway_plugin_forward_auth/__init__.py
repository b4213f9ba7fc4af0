"""``forward-auth``: each request is allowed or answered by an external auth service.

Like Traefik's ForwardAuth and ingress-nginx's ``auth-url``: the gateway sends the auth
service a ``GET`` with the request's credentials, method and URI (never its body); a 2xx
answer lets the request through with headers the auth service chose, any other answer
goes back to the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import GatewaySettings, PluginSpec, hookimpl
from gateway_core.plugin_api import IDENTITY_HEADER
from gateway_plugin_forward_auth.client import CLIENTS
from gateway_plugin_forward_auth.config import ForwardAuthConfig
from gateway_plugin_forward_auth.plugin import ForwardAuth

__all__ = ["SPEC", "ForwardAuth", "ForwardAuthConfig"]

SPEC: PluginSpec[ForwardAuthConfig] = PluginSpec(
    name="forward-auth",
    factory=ForwardAuth.from_binding,
    config_model=ForwardAuthConfig,
    priority=1900,
    version="0.1.0",
    description="Asks an external auth service about each request; 2xx passes, anything else is the answer.",
    owned_headers=(IDENTITY_HEADER,),
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]


@hookimpl
async def gateway_shutdown(settings: GatewaySettings) -> None:
    """Close this worker's auth-service connections after its last request."""
    await CLIENTS.aclose_current()
