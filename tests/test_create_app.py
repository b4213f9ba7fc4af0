"""``create_app``'s knobs as a program uses them: in-code plugins, a route source, a transport.

The gateway runs in the test's event loop: started and stopped through the public API, its
proxy driven through ``httpx.ASGITransport``, its upstream a real server on a real socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from gateway_core import (
    EmptyConfig,
    Endpoint,
    GatewaySettings,
    PluginSpec,
    PoolStats,
    Publish,
    Timeouts,
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    build_snapshot,
    create_app,
    hookimpl,
    make_transport,
)
from gateway_core.testing import RecordingUpstream, ingress, routed_service


class CountingTransport:
    """A transport of the program's own: the settings' transport, with every request noted."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str]] = []
        self.closed = False

    async def send(self, request: UpstreamRequest, endpoint: Endpoint, timeouts: Timeouts) -> UpstreamResponse:
        self.sent.append((request.target.decode(), endpoint.address))
        return await self.inner.send(request, endpoint, timeouts)

    def stats(self) -> dict[Endpoint, PoolStats]:
        return self.inner.stats()

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


class FixedRoutes:
    """A route source publishing one fixed set of objects."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self.documents = documents

    async def run(self, publish: Publish) -> None:
        await publish(build_snapshot([("test", document) for document in self.documents]))
        await asyncio.Event().wait()


class Stamp:
    """An in-code plugin: its spec comes from a hook method, with no entry point."""

    @hookimpl
    def gateway_plugin_specs(self) -> Sequence[PluginSpec[Any]]:
        return [PluginSpec(name="in-code", factory=lambda config, binding: object(), config_model=EmptyConfig)]


async def test_a_chosen_transport_carries_every_upstream_request_and_is_closed_with_the_gateway(
    upstream: Callable[..., RecordingUpstream],
) -> None:
    api = upstream("api")
    settings = GatewaySettings()
    transport = CountingTransport(make_transport(settings))
    routes = FixedRoutes([*routed_service("api", api.port), ingress("all", default_backend="api")])
    gateway = create_app(settings, route_source=routes, transport=transport, load_entry_points=False)
    await gateway.start()
    try:
        asgi: Any = gateway.proxy
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://shop.test") as client:
            responses = [await client.get(f"/items/{number}") for number in range(3)]
    finally:
        await gateway.stop()

    assert [response.status_code for response in responses] == [200, 200, 200]
    assert transport.sent == [(f"/items/{number}", f"127.0.0.1:{api.port}") for number in range(3)]
    assert [seen.path for seen in api.requests] == ["/items/0", "/items/1", "/items/2"]
    assert transport.closed


def test_in_code_plugins_join_or_replace_the_installed_ones() -> None:
    routes = FixedRoutes([])
    alone = create_app(GatewaySettings(), plugins=[Stamp()], route_source=routes, load_entry_points=False)
    joined = create_app(GatewaySettings(), plugins=[Stamp()], route_source=routes)

    assert sorted(alone.specs) == ["in-code"]
    assert {"in-code", "rate-limit", "key-auth"} <= set(joined.specs)
