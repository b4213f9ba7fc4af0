"""``request-id``: every request gets an id, kept from the client or generated, sent upstream and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core import PluginSpec, hookimpl
from gateway_plugin_request_id.config import RequestIdConfig
from gateway_plugin_request_id.plugin import REQUEST_ID, EchoedRequestId, RequestId, new_request_id

__all__ = ["REQUEST_ID", "SPEC", "EchoedRequestId", "RequestId", "RequestIdConfig", "new_request_id"]

SPEC: PluginSpec[RequestIdConfig] = PluginSpec(
    name="request-id",
    factory=RequestId.from_binding,
    config_model=RequestIdConfig,
    priority=3000,
    version="0.1.0",
    description="An id per request (the client's when valid, else a UUID4), sent upstream and echoed back.",
)


@hookimpl
def gateway_plugin_specs() -> Sequence[PluginSpec[Any]]:
    return [SPEC]
