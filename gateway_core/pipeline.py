"""Runs a route's bound plugins through the request phases.

The route already holds each phase's methods in run order, so this is plain iteration:
``on_request`` until one answers, then the upstream call, ``on_response`` (or
``on_local_response`` when the gateway answers itself), and ``on_log``, whose errors (like
``on_local_response``'s) are logged and swallowed. No pluggy here: this is the hot path.

The upstream call nests, outermost first: the retry loop (``retries``, whose decisions are
``transport.retry``'s), then each try through the ``around_upstream`` onion, then the try
itself (pick an endpoint avoiding those already tried, ``on_upstream_request``, send within
``timeouts.per_try``). Each try's result is reported to outlier detection
(``transport.health``). Retries end when a response head is accepted, so a response that
started streaming to the client is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from functools import partial
from typing import Protocol

from gateway_core.errors import (
    BodyNotReplayableError,
    GatewayError,
    NoEndpointError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway_core.messages import (
    Endpoint,
    LocalResponse,
    Outcome,
    RequestContext,
    Timeouts,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway_core.plugin_api import CallNext
from gateway_core.routing.canary import choose_backend
from gateway_core.routing.table import Backend, Route
from gateway_core.transport.base import Transport
from gateway_core.transport.endpoint_state import EndpointState, EndpointStates
from gateway_core.transport.health import FAILURE_STATUSES, OutlierDetector
from gateway_core.transport.mirror import Mirrors
from gateway_core.transport.retry import (
    RetryBudgets,
    backoff_delay,
    error_failure,
    error_retry_reason,
    failure_sent,
    replay_safe,
    status_retry_reason,
)

logger = logging.getLogger("gateway_core.pipeline")


class UpstreamCounters(Protocol):
    """Where retries and ejections are counted (``GatewayMetrics`` is one)."""

    def count_retry(self, route: str, reason: str) -> None:
        """One retry on ``route``, for ``reason`` (the failure of the try before it)."""

    def count_ejection(self, service: str) -> None:
        """One endpoint of ``service`` ejected by outlier detection."""


class Attempt:
    """One try of a request: the endpoints it avoids, its deadline, and the endpoint it picked."""

    __slots__ = ("avoid", "deadline", "endpoint")

    def __init__(self, avoid: Collection[Endpoint] = (), deadline: float | None = None) -> None:
        self.avoid = avoid
        self.deadline = deadline
        """Event-loop time by which the response head must be in (None: only the transport's timeouts)."""
        self.endpoint: Endpoint | None = None


class Pipeline:
    """The request phases of one gateway, over its transport."""

    __slots__ = ("_transport", "_preserve_host", "endpoints", "mirrors", "health", "budgets", "_counters")

    def __init__(
        self,
        transport: Transport,
        *,
        preserve_host: bool = True,
        endpoints: EndpointStates | None = None,
        mirrors: Mirrors | None = None,
        counters: UpstreamCounters | None = None,
    ) -> None:
        self._transport = transport
        self._preserve_host = preserve_host
        self.endpoints = endpoints if endpoints is not None else EndpointStates()
        """Per-endpoint live numbers, shared with the balancers."""
        self.mirrors = mirrors if mirrors is not None else Mirrors(transport)
        self._counters = counters
        self.health = OutlierDetector(
            self.endpoints, on_ejection=counters.count_ejection if counters is not None else None
        )
        """Outlier detection over ``endpoints``."""
        self.budgets = RetryBudgets()
        """Requests and retries in flight per route id (the retry budget)."""

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
        """The tries of one request: one when retries are off, else the retry loop."""
        policy = route.spec.policy
        config = policy.retries
        per_try = policy.timeouts.per_try
        if config.timeout is not None:
            overall = asyncio.get_running_loop().time() + config.timeout
            return await self._retrying(route, backend, ctx, per_try, overall)
        if config.attempts > 1:
            return await self._retrying(route, backend, ctx, per_try, None)
        deadline = None if per_try is None else asyncio.get_running_loop().time() + per_try
        return await self._try(route, backend, ctx, Attempt((), deadline))

    async def _retrying(
        self, route: Route, backend: Backend, ctx: RequestContext, per_try: float | None, deadline: float | None
    ) -> UpstreamResponse:
        """Try, and while the try failed in a way ``retries`` retries and it is safe, try elsewhere.

        The last try's response or error is the result. A discarded response is closed and
        its try ended (``finished``) before the next try. The request counts in the route's
        retry budget from the first try to the result; each retry, until its try ends.
        ``deadline`` (``retries.timeout``, loop time) ends every try and every backoff by then:
        one timer per try, whether ``per_try`` or the overall limit comes first.
        """
        config = route.spec.policy.retries
        request = ctx.request
        route_id = route.info.id
        loop = asyncio.get_running_loop() if per_try is not None or deadline is not None else None
        flight = self.budgets.enter(route_id)
        tried: list[Endpoint] = []
        tries_left = config.attempts
        repeats = 0
        holding = False  # a retry of this request is in the budget's count
        try:
            while True:
                tries_left -= 1
                attempt = Attempt(tried, None if loop is None else _try_deadline(loop, per_try, deadline))
                response: UpstreamResponse | None = None
                error: GatewayError | None = None
                try:
                    response = await self._try(route, backend, ctx, attempt)
                except GatewayError as exc:
                    error = exc
                if holding:
                    flight.retries -= 1
                    holding = False
                reason: str | None = None
                sent = True
                if error is not None:
                    failure = error_failure(error)
                    if failure is not None:
                        reason = error_retry_reason(failure, config)
                        sent = failure_sent(failure)
                elif response is not None and (response.status >= 500 or config.statuses):
                    reason = status_retry_reason(response.status, config)
                if (
                    reason is None
                    or tries_left <= 0
                    or not replay_safe(sent=sent, method=request.method, body=request.body)
                    or not flight.may_retry(config)
                    or (loop is not None and deadline is not None and loop.time() >= deadline)
                ):
                    if error is not None:
                        raise error
                    assert response is not None
                    return response
                if response is not None:
                    response.body.close()
                    self.finished(response)
                if self._counters is not None:
                    self._counters.count_retry(route_id, reason)
                flight.retries += 1
                holding = True
                if attempt.endpoint is not None:
                    tried.append(attempt.endpoint)
                if not self._untried_left(backend, tried):
                    repeats += 1
                    delay = backoff_delay(repeats, config.backoff_base, config.backoff_max)
                    if loop is not None and deadline is not None:
                        delay = min(delay, deadline - loop.time())
                    if delay > 0:
                        await asyncio.sleep(delay)
        finally:
            if holding:
                flight.retries -= 1
            self.budgets.leave(route_id, flight)

    def _untried_left(self, backend: Backend, tried: Collection[Endpoint]) -> bool:
        """Whether the backend has an endpoint this request has not tried that is not ejected."""
        now = time.monotonic()
        states = self.endpoints
        for endpoint in backend.target.endpoints:
            if endpoint not in tried and not states.get(endpoint).ejected(now):
                return True
        return False

    async def _try(self, route: Route, backend: Backend, ctx: RequestContext, attempt: Attempt) -> UpstreamResponse:
        """One upstream try, wrapped by every ``around_upstream`` hook (first = outermost)."""
        if not route.around_upstream:
            return await self._attempt(route, backend, ctx, attempt)
        call: CallNext = partial(self._attempt, route, backend, ctx, attempt)
        for wrapper in reversed(route.around_upstream):
            call = partial(wrapper, ctx, call)
        return await call()

    async def _attempt(self, route: Route, backend: Backend, ctx: RequestContext, attempt: Attempt) -> UpstreamResponse:
        endpoint = backend.balancer.pick(ctx, attempt.avoid)
        if endpoint is None:
            raise NoEndpointError(backend.target.problem or f"no ready endpoint for {backend.label}")
        ctx.endpoint = attempt.endpoint = endpoint
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
            if attempt.deadline is None:
                response = await self._transport.send(request, endpoint, route.timeouts)
            else:
                response = await self._send_until(attempt.deadline, request, endpoint, route.timeouts)
        except BaseException as exc:
            state.outstanding -= 1
            if isinstance(exc, UpstreamError):
                self._failed(route, backend, state, exc.code)
            raise
        state.observe_latency(time.perf_counter() - started)
        if response.status in FAILURE_STATUSES:
            self._failed(route, backend, state, f"status {response.status}")
        elif state.failures:
            state.failures = 0
        if backend.stamp is not None:  # cookie affinity: tell the client which endpoint served it
            backend.stamp(ctx, endpoint, response)
        return response

    async def _send_until(
        self, deadline: float, request: UpstreamRequest, endpoint: Endpoint, timeouts: Timeouts
    ) -> UpstreamResponse:
        """``transport.send`` that gives up at ``deadline`` (loop time) with an upstream timeout.

        Cancelling the send aborts its connection (never back in the pool half-used).
        """
        limit = asyncio.timeout_at(deadline)
        try:
            async with limit:
                return await self._transport.send(request, endpoint, timeouts)
        except TimeoutError:
            if not limit.expired():
                raise
            raise UpstreamTimeoutError(
                f"upstream {endpoint} sent no response head within the try's time limit"
            ) from None

    def _failed(self, route: Route, backend: Backend, state: EndpointState, reason: str) -> None:
        self.health.failed(
            state,
            config=route.spec.policy.outlier_detection,
            endpoints=backend.target.endpoints,
            service=backend.label,
            reason=reason,
        )

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


def _try_deadline(loop: asyncio.AbstractEventLoop, per_try: float | None, deadline: float | None) -> float | None:
    """A try's deadline: ``per_try`` from now, but not past the overall ``deadline``."""
    if per_try is None:
        return deadline
    end = loop.time() + per_try
    return end if deadline is None else min(end, deadline)
