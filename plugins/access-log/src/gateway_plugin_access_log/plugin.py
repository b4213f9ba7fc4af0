"""The ``access-log`` plugin object: one per route, formatting that route's lines."""

from __future__ import annotations

from gateway_core import Binding, Outcome, RequestContext
from gateway_plugin_access_log.config import AccessLogConfig
from gateway_plugin_access_log.line import LineFormat
from gateway_plugin_access_log.writer import OUTPUTS, Output, Outputs


class AccessLog:
    """Turns each finished request into a line and hands it to its output's writer."""

    __slots__ = ("config", "output", "_format")

    def __init__(self, config: AccessLogConfig, line: LineFormat, output: Output) -> None:
        self.config = config
        self.output = output
        self._format = line

    @classmethod
    def from_binding(cls, config: AccessLogConfig, binding: Binding, *, outputs: Outputs = OUTPUTS) -> AccessLog:
        """Compile the line and find the output; no file is opened and no thread started here."""
        line = LineFormat(
            config.fields, binding.route, headers=config.headers, request_id_header=config.request_id_header
        )
        return cls(config, line, outputs.get(config.output, config.queue_size))

    async def on_log(self, ctx: RequestContext, outcome: Outcome) -> None:
        output = self.output
        if len(output.queue) >= output.limit:  # full: count the drop without making the line
            output.dropped += 1
            return
        output.offer(self._format.render(ctx, outcome))
