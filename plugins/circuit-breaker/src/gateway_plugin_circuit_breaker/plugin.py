"""The ``circuit-breaker`` plugin objects: one per route, sharing breakers through the registry.

``per: service`` refuses in ``on_request`` (a ``LocalResponse`` with ``Retry-After``) and
judges the upstream call in ``around_upstream``. ``per: endpoint`` cannot know the endpoint
before the attempt picks it, so it refuses in ``on_upstream_request`` (a ``GatewayError``
with ``Retry-After``)
and judges by ``ctx.endpoint`` in ``around_upstream``. Failures are transport errors and the
configured statuses; anything else the upstream answers is a success.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from gateway_core import (
    Binding,
    CallNext,
    GatewayError,
    LocalResponse,
    PluginConfigError,
    RequestContext,
    StashKey,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway_core.errors import BodyNotReplayableError, EndpointRefusedError, NoEndpointError, UpstreamError
from gateway_plugin_circuit_breaker.breaker import Breaker, Refusal, Ticket
from gateway_plugin_circuit_breaker.config import CircuitBreakerConfig
from gateway_plugin_circuit_breaker.registry import BreakerRegistry, Credentials, EndpointBreakers

CIRCUIT_OPEN = "circuit_open"
_MESSAGE = "the upstream is failing; calls to it are paused while its circuit breaker is open"
_BODY = json.dumps({"error": CIRCUIT_OPEN, "message": _MESSAGE}, separators=(",", ":")).encode()

_NOT_THE_UPSTREAM = (NoEndpointError, BodyNotReplayableError)
"""Upstream-side errors that say nothing about the upstream's health."""

_ATTEMPT: StashKey[Ticket | None] = StashKey("circuit-breaker.attempt")
"""``per: endpoint``: the ticket of the current attempt, from on_upstream_request to around_upstream."""


class CircuitOpenError(GatewayError):
    """A call refused because the breaker is open (the proxy answers 503 ``circuit_open``)."""

    status = 503
    code = CIRCUIT_OPEN
    public = True

    @classmethod
    def for_refusal(cls, refusal: Refusal) -> CircuitOpenError:
        return cls(_MESSAGE).with_headers(("Retry-After", refusal.header))


class EndpointCircuitOpenError(CircuitOpenError, EndpointRefusedError):
    """``per: endpoint``: this endpoint's breaker is open; nothing was sent, so the
    gateway's retries may move the request to another endpoint."""


def refused(refusal: Refusal) -> LocalResponse:
    """The 503 answer to a refused call, with ``Retry-After``."""
    headers = [(b"content-type", b"application/json"), (b"retry-after", refusal.header.encode())]
    return LocalResponse(status=503, body=_BODY, headers=headers)


async def judged(ticket: Ticket, call_next: CallNext, failure_statuses: frozenset[int]) -> UpstreamResponse:
    """Make the call and report it on ``ticket``; errors propagate unchanged."""
    try:
        response = await call_next()
    except BaseException as exc:
        report_error(ticket, exc)
        raise
    report_response(ticket, response.status, failure_statuses)
    return response


def report_error(ticket: Ticket, exc: BaseException) -> None:
    """A transport error is a failure; anything else (another plugin's error, a cancelled
    request, no endpoint at all) says nothing about the upstream's health."""
    if isinstance(exc, UpstreamError) and not isinstance(exc, _NOT_THE_UPSTREAM):
        ticket.fail(exc.code)
    else:
        ticket.release()


def report_response(ticket: Ticket, status: int, failure_statuses: frozenset[int]) -> None:
    """A response is a failure when its status is listed, else a success."""
    if status in failure_statuses:
        ticket.fail(f"status {status}")
    else:
        ticket.succeed()


class ServiceCircuitBreaker:
    """``per: service``: one breaker for the route's Service."""

    def __init__(self, config: CircuitBreakerConfig, breaker: Breaker) -> None:
        self.config = config
        self.breaker = breaker
        self._failure_statuses = frozenset(config.failure_statuses)

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        refusal = await self.breaker.refusal()
        return None if refusal is None else refused(refusal)

    async def around_upstream(self, ctx: RequestContext, call_next: CallNext) -> UpstreamResponse:
        admission = await self.breaker.admit()
        if isinstance(admission, Refusal):  # opened since on_request (or another trial started)
            raise CircuitOpenError.for_refusal(admission)
        return await judged(admission, call_next, self._failure_statuses)


class EndpointCircuitBreaker:
    """``per: endpoint``: one breaker per endpoint of the route's Service."""

    def __init__(self, config: CircuitBreakerConfig, breakers: EndpointBreakers) -> None:
        self.config = config
        self.breakers = breakers
        self._failure_statuses = frozenset(config.failure_statuses)

    async def on_upstream_request(self, ctx: RequestContext, request: UpstreamRequest) -> None:
        earlier = ctx.stash.get(_ATTEMPT)
        if earlier is not None:  # a plugin inside this one retried: the earlier attempt gets no verdict
            earlier.release()
        ctx.stash[_ATTEMPT] = None
        endpoint = ctx.endpoint
        if endpoint is None:
            return
        admission = await self.breakers.get(endpoint).admit()
        if isinstance(admission, Refusal):
            raise EndpointCircuitOpenError.for_refusal(admission)
        ctx.stash[_ATTEMPT] = admission

    async def around_upstream(self, ctx: RequestContext, call_next: CallNext) -> UpstreamResponse:
        ctx.stash[_ATTEMPT] = None
        try:
            response = await call_next()
        except BaseException as exc:
            ticket = self._take(ctx)
            if ticket is not None:
                report_error(ticket, exc)
            raise
        ticket = self._take(ctx)
        if ticket is not None:
            report_response(ticket, response.status, self._failure_statuses)
        return response

    @staticmethod
    def _take(ctx: RequestContext) -> Ticket | None:
        ticket = ctx.stash.get(_ATTEMPT)
        ctx.stash[_ATTEMPT] = None
        return ticket


def plugin_factory(registry: BreakerRegistry) -> Callable[[CircuitBreakerConfig, Binding], object]:
    """The ``PluginSpec.factory``: plugin objects whose breakers come from ``registry``."""

    def make(config: CircuitBreakerConfig, binding: Binding) -> object:
        credentials = redis_credentials(config, binding)
        if config.per == "endpoint":
            return EndpointCircuitBreaker(config, registry.endpoints(binding.route, config, credentials))
        return ServiceCircuitBreaker(config, registry.service(binding.route, config, credentials))

    return make


def redis_credentials(config: CircuitBreakerConfig, binding: Binding) -> Credentials:
    """``(username, password)`` from ``redis_secret``; PluginConfigError when unusable."""
    if config.redis_secret is None:
        return None, None
    data = binding.secrets(config.redis_secret)
    if data is None:
        raise PluginConfigError(f"Secret {config.redis_secret!r} not found in namespace {binding.route.namespace!r}")
    if "password" not in data:
        raise PluginConfigError(f"Secret {config.redis_secret!r} has no `password` entry")
    try:
        password = data["password"].decode("utf-8")
        username = data["username"].decode("utf-8") if "username" in data else None
    except UnicodeDecodeError:
        raise PluginConfigError(f"Secret {config.redis_secret!r}: the Redis credentials are not UTF-8") from None
    return username, password
