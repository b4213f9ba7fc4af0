"""Runs a route's bound plugins through the request phases.

The route already holds each phase's methods in run order, so this is plain iteration:
``on_request`` until one answers, the ``around_upstream`` onion around the attempt (pick an
endpoint, ``on_upstream_request``, send), ``on_response`` (or ``on_local_response`` when the
gateway answers itself), and ``on_log``, whose errors (like ``on_local_response``'s) are
logged and swallowed. No pluggy here: this is the hot path.
"""

from __future__ import annotations

import logging
from functools import partial

from gateway_core.errors import BodyNotReplayableError, NoEndpointError
from gateway_core.messages import LocalResponse, Outcome, RequestContext, UpstreamResponse
from gateway_core.plugin_api import CallNext
from gateway_core.routing.table import Route
from gateway_core.transport.base import Transport

logger = logging.getLogger("gateway_core.pipeline")


class Pipeline:
    """The request phases of one gateway, over its transport."""

    __slots__ = ("_transport", "_preserve_host")

    def __init__(self, transport: Transport, *, preserve_host: bool = True) -> None:
        self._transport = transport
        self._preserve_host = preserve_host

    async def on_request(self, route: Route, ctx: RequestContext) -> LocalResponse | None:
        """Run ``on_request`` hooks in order; the first response short-circuits."""
        for index, hook in enumerate(route.on_request):
            response: LocalResponse | None = await hook(ctx)
            if response is not None:
                ctx.answered_by = route.on_request_names[index]
                return response
        return None

    async def call_upstream(self, route: Route, ctx: RequestContext) -> UpstreamResponse:
        """The upstream call, wrapped by every ``around_upstream`` hook (first = outermost)."""
        if not route.around_upstream:
            return await self._attempt(route, ctx)
        call: CallNext = partial(self._attempt, route, ctx)
        for wrapper in reversed(route.around_upstream):
            call = partial(wrapper, ctx, call)
        return await call()

    async def _attempt(self, route: Route, ctx: RequestContext) -> UpstreamResponse:
        endpoint = route.balancer.pick(ctx)
        if endpoint is None:
            raise NoEndpointError(route.spec.backend.problem or f"no ready endpoint for {route.service_label}")
        ctx.endpoint = endpoint
        request = ctx.request
        if request.body is not None and request.body.consumed:
            raise BodyNotReplayableError("the request body was already streamed to an upstream; it cannot be retried")
        if not self._preserve_host or not ctx.host:
            request.headers.set("host", endpoint.address)
        for hook in route.on_upstream_request:
            await hook(ctx, request)
        return await self._transport.send(request, endpoint, route.timeouts)

    async def on_response(self, route: Route, ctx: RequestContext, response: UpstreamResponse) -> None:
        """Run ``on_response`` hooks in order."""
        for hook in route.on_response:
            await hook(ctx, response)

    async def on_local_response(self, route: Route, ctx: RequestContext, response: LocalResponse) -> None:
        """Run ``on_local_response`` hooks; an error in one is logged and the others still run."""
        for hook in route.on_local_response:
            try:
                await hook(ctx, response)
            except Exception:
                logger.exception("on_local_response of a plugin failed on route %s", route.info.id)

    async def on_log(self, route: Route, ctx: RequestContext, outcome: Outcome) -> None:
        """Run ``on_log`` hooks; an error in one is logged and the others still run."""
        for hook in route.on_log:
            try:
                await hook(ctx, outcome)
            except Exception:
                logger.exception("on_log of a plugin failed on route %s", route.info.id)
