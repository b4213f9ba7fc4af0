"""The ``response-header`` plugin object: one per route, adding one header to responses."""

from __future__ import annotations

from gateway_core import Binding, Plugin, RequestContext, UpstreamResponse
from gateway_plugin_response_header.config import ResponseHeaderConfig


class ResponseHeader(Plugin):
    """Sets the configured header on every upstream response of its route."""

    def __init__(self, config: ResponseHeaderConfig, binding: Binding) -> None:
        # Everything is decided here, at bind time: the phase below only copies values.
        # The model already refused values that ``Headers.set`` would reject, so it cannot raise.
        self.name = config.name
        self.value = config.value
        self.overwrite = config.overwrite

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        if self.overwrite:
            response.headers.set(self.name, self.value)
        elif self.name not in response.headers:
            response.headers.add(self.name, self.value)
