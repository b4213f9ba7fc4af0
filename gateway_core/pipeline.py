"""Runs a route's bound plugins through the request phases.

The route already holds each phase's methods in run order, so this is plain iteration:
``on_request`` until one answers, the ``around_upstream`` onion around the attempt (pick an
endpoint, ``on_upstream_request``, send), ``on_response`` (or ``on_local_response`` when the
gateway answers itself), and ``on_log``, whose errors (like ``on_local_response``'s) are
logged and swallowed. No pluggy here: this is the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from functools import partial

from gateway_core.errors import BodyNotReplayableError, NoEndpointError
from gateway_core.messages import Endpoint, LocalResponse, Outcome, RequestContext, UpstreamResponse
from gateway_core.plugin_api import CallNext
from gateway_core.routing.canary import choose_backend
from gateway_core.routing.table import Backend, Route
from gateway_core.transport.base import Transport
from gateway_core.transport.endpoint_state import EndpointStates
from gateway_core.transport.mirror import Mirrors

logger = logging.getLogger("gateway_core.pipeline")


class Pipeline:
    """The request phases of one gateway, over its transport."""

    __slots__ = ("_transport", "_preserve_host", "endpoints", "mirrors")

    def __init__(
        self,
        transport: Transport,
        *,
        preserve_host: bool = True,
        endpoints: EndpointStates | None = None,
        mirrors: Mirrors | None = None,
    ) -> None:
        self._transport = transport
        self._preserve_host = preserve_host
        self.endpoints = endpoints if endpoints is not None else EndpointStates()
        """Per-endpoint live numbers, shared with the balancers."""
        self.mirrors = mirrors if mirrors is not None else Mirrors(transport)

    async def on_request(self, route: Route, ctx: RequestContext) -> LocalResponse | None:
        """Run ``on_request`` hooks in order; the first response short-circuits."""
        for index, hook in enumerate(route.on_request):
            response: LocalResponse | None = await hook(ctx)
            if response is not None:
                ctx.answered_by = route.on_request_names[index]
                return response
        return None

    async def call_upstream(self, route: Route, ctx: RequestContext) -> UpstreamResponse:
        """Choose the backend (canaries), start the mirrors, then make the tries."""
        backend = choose_backend(route, ctx) if route.canaries else route.backend
        if route.mirrors:
            self.mirrors.start(route.mirrors, ctx)
        return await self._tries(route, backend, ctx)

    async def _tries(self, route: Route, backend: Backend, ctx: RequestContext) -> UpstreamResponse:
        """One try for now; retries come here."""
        return await self._try(route, backend, ctx, ())

    async def _try(
        self, route: Route, backend: Backend, ctx: RequestContext, avoid: Collection[Endpoint]
    ) -> UpstreamResponse:
        """One upstream try, wrapped by every ``around_upstream`` hook (first = outermost)."""
        if not route.around_upstream:
            return await self._attempt(route, backend, ctx, avoid)
        call: CallNext = partial(self._attempt, route, backend, ctx, avoid)
        for wrapper in reversed(route.around_upstream):
            call = partial(wrapper, ctx, call)
        return await call()

    async def _attempt(
        self, route: Route, backend: Backend, ctx: RequestContext, avoid: Collection[Endpoint]
    ) -> UpstreamResponse:
        endpoint = backend.balancer.pick(ctx, avoid)
        if endpoint is None:
            raise NoEndpointError(backend.target.problem or f"no ready endpoint for {backend.label}")
        ctx.endpoint = endpoint
        request = ctx.request
        if request.body is not None and request.body.consumed:
            raise BodyNotReplayableError("the request body was already streamed to an upstream; it cannot be retried")
        if not self._preserve_host or not ctx.host:
            request.headers.set("host", endpoint.address)
        for hook in route.on_upstream_request:
            await hook(ctx, request)
        state = self.endpoints.get(endpoint)
        state.outstanding += 1
        started = time.perf_counter()
        try:
            response = await self._transport.send(request, endpoint, route.timeouts)
        except BaseException:
            state.outstanding -= 1
            raise
        state.observe_latency(time.perf_counter() - started)
        if backend.stamp is not None:  # cookie affinity: tell the client which endpoint served it
            backend.stamp(ctx, endpoint, response)
        return response

    def finished(self, response: UpstreamResponse) -> None:
        """The response ``call_upstream`` returned has ended (relayed, failed or dropped)."""
        if response.endpoint is not None:
            self.endpoints.get(response.endpoint).outstanding -= 1

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
