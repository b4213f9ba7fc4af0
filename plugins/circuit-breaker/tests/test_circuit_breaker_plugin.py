"""The plugin objects' phases called as the pipeline calls them, with hand-written ``call_next``s.

These cover what a real upstream cannot easily produce on cue: a cancelled request while it
holds the half-open trial, another plugin's error inside the call, a retry inside the breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import pytest
from gateway_plugin_circuit_breaker import (
    Breaker,
    BreakerRegistry,
    CircuitBreakerConfig,
    CircuitOpenError,
    EndpointCircuitBreaker,
    ServiceCircuitBreaker,
    State,
)
from gateway_plugin_circuit_breaker.plugin import plugin_factory

from gateway_core import (
    Binding,
    CallNext,
    Endpoint,
    GatewayError,
    Headers,
    RequestContext,
    RouteInfo,
    UpstreamRequest,
    UpstreamResponse,
)
from gateway_core.errors import NoEndpointError, UpstreamTimeoutError

ROUTE = RouteInfo(id="r", namespace="default", ingress="api", host="*", path="/", path_type="Prefix", service="api")
DEAD = Endpoint("10.0.0.1", 80)
ALIVE = Endpoint("10.0.0.2", 80)


def _no_secrets(name: str) -> Mapping[str, bytes] | None:
    return None


def _state(breaker: Breaker) -> State:
    """The state, read through a call (mypy would narrow a re-read property)."""
    return breaker.state


def _context() -> RequestContext:
    return RequestContext(
        scope={},
        method="GET",
        host="",
        path="/",
        scheme="http",
        client_ip="192.0.2.1",
        peer_ip="192.0.2.1",
        route=ROUTE,
        request=UpstreamRequest("GET", b"/", Headers()),
    )


def _service(**config: object) -> ServiceCircuitBreaker:
    plugin = plugin_factory(BreakerRegistry())(
        CircuitBreakerConfig.model_validate(config), Binding(plugin="circuit-breaker", route=ROUTE, secrets=_no_secrets)
    )
    assert isinstance(plugin, ServiceCircuitBreaker)
    return plugin


def _endpoint(**config: object) -> EndpointCircuitBreaker:
    plugin = plugin_factory(BreakerRegistry())(
        CircuitBreakerConfig.model_validate({"per": "endpoint", **config}),
        Binding(plugin="circuit-breaker", route=ROUTE, secrets=_no_secrets),
    )
    assert isinstance(plugin, EndpointCircuitBreaker)
    return plugin


def _answer(status: int) -> CallNext:
    async def call_next() -> UpstreamResponse:
        return UpstreamResponse(status, Headers())

    return call_next


def _raise(error: BaseException) -> CallNext:
    async def call_next() -> UpstreamResponse:
        raise error

    return call_next


async def _until_due(plugin: ServiceCircuitBreaker) -> None:
    deadline = time.monotonic() + 3
    while await plugin.on_request(_context()) is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_other_errors_propagate_unchanged_and_are_not_failures() -> None:
    plugin = _service(fail_max=1)
    mine = GatewayError("another plugin refused")
    with pytest.raises(GatewayError) as raised:
        await plugin.around_upstream(_context(), _raise(mine))
    assert raised.value is mine
    with pytest.raises(NoEndpointError):
        await plugin.around_upstream(_context(), _raise(NoEndpointError("no ready endpoint")))
    assert _state(plugin.breaker) is State.CLOSED


async def test_a_transport_error_propagates_unchanged_after_it_is_counted() -> None:
    plugin = _service(fail_max=1, reset_timeout=30)
    timeout = UpstreamTimeoutError("slow")
    with pytest.raises(UpstreamTimeoutError) as raised:
        await plugin.around_upstream(_context(), _raise(timeout))
    assert raised.value is timeout
    assert _state(plugin.breaker) is State.OPEN
    refused = await plugin.on_request(_context())
    assert refused is not None
    assert refused.status == 503
    assert (b"retry-after", b"30") in refused.headers


async def test_opened_between_on_request_and_the_call_raises_circuit_open() -> None:
    plugin = _service(fail_max=1, reset_timeout=30)
    ctx = _context()
    assert await plugin.on_request(ctx) is None
    await plugin.around_upstream(_context(), _answer(500))  # another request opens it meanwhile
    with pytest.raises(CircuitOpenError) as raised:
        await plugin.around_upstream(ctx, _answer(200))
    assert (raised.value.status, raised.value.code) == (503, "circuit_open")


async def test_a_cancelled_trial_frees_the_trial_for_the_next_request() -> None:
    plugin = _service(fail_max=1, reset_timeout=0.2)
    await plugin.around_upstream(_context(), _answer(502))
    await _until_due(plugin)
    with pytest.raises(asyncio.CancelledError):
        await plugin.around_upstream(_context(), _raise(asyncio.CancelledError()))
    assert _state(plugin.breaker) is State.HALF_OPEN
    assert await plugin.on_request(_context()) is None
    response = await plugin.around_upstream(_context(), _answer(200))
    assert response.status == 200
    assert _state(plugin.breaker) is State.CLOSED


async def test_per_endpoint_refuses_only_the_open_endpoint_before_sending() -> None:
    plugin = _endpoint(fail_max=2, reset_timeout=30)

    def attempt(endpoint: Endpoint, status: int) -> CallNext:
        async def call_next() -> UpstreamResponse:
            ctx.endpoint = endpoint
            await plugin.on_upstream_request(ctx, ctx.request)
            sent.append(endpoint)
            return UpstreamResponse(status, Headers())

        return call_next

    sent: list[Endpoint] = []
    for _ in range(2):
        ctx = _context()
        await plugin.around_upstream(ctx, attempt(DEAD, 503))
    ctx = _context()
    with pytest.raises(CircuitOpenError):
        await plugin.around_upstream(ctx, attempt(DEAD, 200))
    ctx = _context()
    assert (await plugin.around_upstream(ctx, attempt(ALIVE, 200))).status == 200
    assert sent == [DEAD, DEAD, ALIVE]
    assert _state(plugin.breakers.get(DEAD)) is State.OPEN
    assert _state(plugin.breakers.get(ALIVE)) is State.CLOSED


async def test_per_endpoint_a_retry_inside_judges_only_the_last_attempt() -> None:
    plugin = _endpoint(fail_max=1, reset_timeout=30)
    ctx = _context()

    async def retrying() -> UpstreamResponse:  # a plugin inside this one: two attempts
        for endpoint, status in ((DEAD, 500), (ALIVE, 200)):
            ctx.endpoint = endpoint
            await plugin.on_upstream_request(ctx, ctx.request)
            response = UpstreamResponse(status, Headers())
        return response

    assert (await plugin.around_upstream(ctx, retrying)).status == 200
    assert _state(plugin.breakers.get(DEAD)) is State.CLOSED  # its 500 was never seen as a verdict
    assert _state(plugin.breakers.get(ALIVE)) is State.CLOSED


def test_endpoint_breakers_are_bounded() -> None:
    plugin = _endpoint()
    breakers = plugin.breakers
    first = breakers.get(Endpoint("10.1.0.0", 80))
    for index in range(1, 1_100):
        breakers.get(Endpoint(f"10.1.{index // 256}.{index % 256}", 80))
    assert len(breakers) == 1_024
    assert breakers.get(Endpoint("10.1.0.0", 80)) is not first
